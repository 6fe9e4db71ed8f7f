"""The orchestrator's metrics, served at /metrics in Prometheus' text format."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contracts.events import Event


class OrchestratorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter(
            "wf_commands_total", "Commands handled, by kind and outcome", ["kind", "outcome"], registry=registry
        )
        self.events = Counter("wf_events_appended_total", "Events appended, by type", ["type"], registry=registry)
        self.conflicts = Counter(
            "wf_occ_conflicts_total", "Appends refused because another writer appended first", registry=registry
        )
        self.step_tries = Counter(
            "wf_step_tries_total", "Step tries, by step and outcome", ["step", "outcome"], registry=registry
        )
        self.dead_letters = Counter("wf_dead_letters_total", "Unreadable commands dead-lettered", registry=registry)
        self.batch_commits = Counter(
            "wf_event_batch_commits_total",
            "Atomic batches committed to the events stream: one disk sync each, shared by the decisions in it",
            registry=registry,
        )
        self.seconds = Histogram(
            "wf_command_seconds",
            "Time from a command's delivery to its events being appended and sent on",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.lag = Gauge(
            "wf_consumer_pending", "Commands waiting for the orchestrators", ["consumer"], registry=registry
        )

    def record(self, kind: str, events: list[Event]) -> None:
        """What one decision did."""
        outcome = "rejected" if events and events[0].type == "CommandRejected" else "applied" if events else "no-op"
        self.commands.labels(kind=kind, outcome=outcome).inc()
        for event in events:
            self.events.labels(type=event.type).inc()
            if event.type == "StepScheduled":
                self.step_tries.labels(step=event.step, outcome="scheduled").inc()
            elif event.type == "StepAttemptFailed":
                self.step_tries.labels(step=event.step, outcome=f"failed:{event.error_type}").inc()
