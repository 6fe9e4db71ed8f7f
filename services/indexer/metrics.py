"""The indexer's metrics, served at /metrics in Prometheus' text format."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IndexerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Histogram(
            "wf_index_lag_seconds",
            "Projection lag: from a state's write to the read model (the broker's time) to its row committed in the index",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.pending = Gauge("wf_index_pending", "Read-model changes not yet in the index", registry=registry)
        self.indexed = Counter("wf_index_changes_total", "Read-model changes applied to the index", registry=registry)
        self.unreadable = Counter(
            "wf_index_unreadable_total", "Read-model entries that are not a workflow state (skipped)", registry=registry
        )
        self.applied_at = Gauge(
            "wf_index_applied_timestamp_seconds", "When a batch was last applied", registry=registry
        )
