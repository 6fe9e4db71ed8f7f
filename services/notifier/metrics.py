"""The notifier's metrics, served at /metrics in Prometheus' text format."""

from prometheus_client import CollectorRegistry, Counter


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queued = Counter(
            "wf_notifications_queued_total", "Deliveries queued, one per matching subscription", ["kind"],
            registry=registry,
        )  # fmt: skip
        self.delivered = Counter(
            "wf_notifications_delivered_total", "Deliveries a receiver took", ["channel"], registry=registry
        )
        self.retries = Counter(
            "wf_notifications_retries_total", "Deliveries a receiver did not take, tried again later", ["channel"],
            registry=registry,
        )  # fmt: skip
        self.dead_letters = Counter(
            "wf_notifications_dead_letters_total", "Deliveries given up after the retry window, kept as dead letters",
            ["channel"], registry=registry,
        )  # fmt: skip
