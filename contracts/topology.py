"""Where messages live: subject names, streams and buckets, declared here and nowhere else.

Every name derives from one prefix (default `wf`), so tests and tenants can share a server without meeting. Every
stream and bucket is stored on `replicas` servers: 1 on a single server, 3 on a cluster (WF_REPLICAS)."""

import logging
from dataclasses import dataclass

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 120.0
MAX_COMMAND_BYTES = 64 * 1024
JOB_ACK_WAIT_S = 5.0
ORCHESTRATOR_CONSUMER = "orchestrator"
PROCESSOR_CONSUMER = "processor"
RESULT_KINDS, FIRED_KINDS = {"complete_job", "fail_job"}, {"fire_timer"}
INBOUND_KINDS = ("commands", "results", "fired")  # the subjects' second token
JOB_HEARTBEAT_S = 1.5
KV_STREAM_PREFIX = "KV_"  # nats-py stores a bucket `b` in the stream `KV_b`
BULK_KEPT_S = 7 * 24 * 3600.0  # a bulk action's keys (contracts/bulk.py) are dropped this long after their last write
LINKS_KEPT_S = 30 * 24 * 3600.0  # a used decision link's nonce: longer than any link lives (contracts/links.py)
NOTIFIER_CONSUMER, REMINDERS_CONSUMER = "notifier", "reminders"


@dataclass(frozen=True)
class Topology:
    prefix: str = "wf"
    replicas: int = 1  # servers that store each stream and bucket; a cluster of 3 survives losing one at 3

    @property
    def _upper(self) -> str:
        return self.prefix.upper().replace("-", "_")

    # streams and buckets
    @property
    def events_stream(self) -> str:
        return f"{self._upper}_EVENTS"

    @property
    def commands_stream(self) -> str:
        return f"{self._upper}_COMMANDS"

    @property
    def jobs_stream(self) -> str:
        return f"{self._upper}_JOBS"

    @property
    def dead_stream(self) -> str:
        return f"{self._upper}_DEAD"

    @property
    def notify_stream(self) -> str:
        """The notifier's: each subscription's deliveries, and the reminders the broker fires when due."""
        return f"{self._upper}_NOTIFY"

    @property
    def state_bucket(self) -> str:
        return f"{self.prefix}_state"

    @property
    def types_bucket(self) -> str:
        return f"{self.prefix}_types"

    @property
    def exports_bucket(self) -> str:
        """The object store where retention keeps the log of each workflow it removes (`export_name`)."""
        return f"{self.prefix}_exports"

    @property
    def bulk_bucket(self) -> str:
        """The bulk actions the API runs: each one's workflows, progress, refusals and lease (contracts/bulk.py)."""
        return f"{self.prefix}_bulk"

    @property
    def subscriptions_bucket(self) -> str:
        """Who is told what, and where (contracts/notifications.py): the API writes it, the notifier reads it."""
        return f"{self.prefix}_subscriptions"

    @property
    def links_bucket(self) -> str:
        """The decision links the API has taken (by nonce): each is taken once."""
        return f"{self.prefix}_links"

    # subjects
    def events_subject(self, workflow_id: str = "*") -> str:
        return f"{self.prefix}.events.{workflow_id}"

    def commands_subject(self, workflow_id: str = "*") -> str:
        """Where anyone (the api, `wf`, any NATS client) sends a workflow the commands a person gives."""
        return f"{self.prefix}.commands.{workflow_id}"

    def results_subject(self, workflow_id: str = "*") -> str:
        """Where the processors send a job's result: only they may publish here (deploy/nats/auth.conf)."""
        return f"{self.prefix}.results.{workflow_id}"

    def fired_subject(self, workflow_id: str = "*") -> str:
        """Where the broker publishes a timer when it is due: only the orchestrator may aim a timer here."""
        return f"{self.prefix}.fired.{workflow_id}"

    def subject_for(self, kind: str, workflow_id: str) -> str:
        """The one subject a command of this kind is accepted on: a client cannot pass off a job's result or a
        timer as its own, since its user may publish on the commands subjects only."""
        if kind in RESULT_KINDS:
            return self.results_subject(workflow_id)
        if kind in FIRED_KINDS:
            return self.fired_subject(workflow_id)
        return self.commands_subject(workflow_id)

    def inbound_subjects(self) -> list[str]:
        """Every subject the orchestrator takes commands from. `>`, not `*` (the same subjects: the stream keeps one
        token there): with `*`, nats-server 2.15 never delivered a message published to the literal subject
        `<prefix>.commands.>` once a timer was in the stream."""
        return [f"{self.prefix}.{kind}.>" for kind in INBOUND_KINDS]

    def is_inbound(self, subject: str) -> bool:
        """One of the subjects the orchestrator takes commands from (the commands stream also holds timers)."""
        return subject.startswith(tuple(f"{self.prefix}.{kind}." for kind in INBOUND_KINDS))

    def timer_subject(self, workflow_id: str, timer_id: str) -> str:
        return f"{self.prefix}.timers.{workflow_id}.{timer_id}"

    def jobs_subject(self, workflow_type: str = "*", step: str = "*") -> str:
        return f"{self.prefix}.jobs.{workflow_type}.{step}"

    def deliveries_subject(self, subscription_id: str = "*") -> str:
        return f"{self.prefix}.deliveries.{subscription_id}"

    def reminder_schedule_subject(self, workflow_id: str, entered_sequence: int | str = "*") -> str:
        """Where a reminder waits for its time (the broker then publishes it to `reminders_subject`)."""
        return f"{self.prefix}.remind.{workflow_id}.{entered_sequence}"

    def reminders_subject(self, workflow_id: str = "*") -> str:
        return f"{self.prefix}.reminders.{workflow_id}"

    def types_apply_subject(self) -> str:
        """Where the api asks the orchestrators to publish a version of a type (request/reply; no stream keeps it)."""
        return f"{self.prefix}.types.apply"

    def dead_subject(self, source: str) -> str:
        return f"{self.prefix}.dead.{source}"

    def workflow_id_of(self, subject: str) -> str:
        """The workflow id token of an events or commands subject."""
        return subject.split(".")[2]

    def stream_configs(self) -> list[StreamConfig]:
        p = self.prefix
        return [
            StreamConfig(
                name=self.events_stream,
                subjects=[f"{p}.events.*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
                allow_direct=True,
                allow_atomic=True,  # the events of one decision are appended all-or-nothing
            ),
            StreamConfig(
                name=self.commands_stream,
                subjects=[f"{p}.commands.*", f"{p}.results.*", f"{p}.fired.*", f"{p}.timers.*.*"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
                max_msg_size=MAX_COMMAND_BYTES,
                allow_msg_schedules=True,  # durable timers: the broker fires them, no process holds them
            ),
            StreamConfig(
                name=self.jobs_stream,
                subjects=[f"{p}.jobs.*.*"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
            ),
            StreamConfig(
                name=self.notify_stream,
                subjects=[f"{p}.deliveries.*", f"{p}.remind.*.*", f"{p}.reminders.*"],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=DUPLICATE_WINDOW_S,
                allow_msg_schedules=True,  # reminders: the broker fires them when due
            ),
            StreamConfig(
                name=self.dead_stream,
                subjects=[f"{p}.dead.>"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
            ),
        ]

    def orchestrator_consumer(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=ORCHESTRATOR_CONSUMER,
            durable_name=ORCHESTRATOR_CONSUMER,
            filter_subjects=self.inbound_subjects(),
            ack_policy=AckPolicy.EXPLICIT,
            # Not acked by then (its orchestrator died, or a fetched batch was dropped): delivered again. Not 0.1 s, the
            # first value of the backoff list it had (NATS waits that instead): a command still being decided went to
            # another replica, which raced the first. Not 5 s: batches FastStream drops would wait that long
            # (decision 7).
            ack_wait=1.0,
            max_deliver=20,  # a command failing transiently this often goes to the dead letters
            max_ack_pending=1000,
        )

    def processor_consumer(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=PROCESSOR_CONSUMER,
            durable_name=PROCESSOR_CONSUMER,
            filter_subject=self.jobs_subject(),
            ack_policy=AckPolicy.EXPLICIT,
            # A processor that died holding a job gives it back after ack_wait; one still working says so every
            # JOB_HEARTBEAT_S, so a slow run is never handed to another (no backoff: its first value would act as the
            # ack wait instead).
            ack_wait=JOB_ACK_WAIT_S,
            max_deliver=5,
            max_ack_pending=1000,
        )

    def notifier_consumer(self) -> ConsumerConfig:
        """The notifier's place in the log: every event, in order, each acked once its deliveries are queued."""
        return ConsumerConfig(
            name=NOTIFIER_CONSUMER,
            durable_name=NOTIFIER_CONSUMER,
            filter_subject=self.events_subject(),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_ack_pending=1000,
        )

    def reminders_consumer(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=REMINDERS_CONSUMER,
            durable_name=REMINDERS_CONSUMER,
            filter_subject=self.reminders_subject(),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
        )

    def deliveries_consumer(self, subscription_id: str) -> ConsumerConfig:
        """One per subscription, one message at a time: its deliveries go in order, and a receiver that is down
        holds back its own and no one else's."""
        name = f"deliver-{subscription_id}"
        return ConsumerConfig(
            name=name,
            durable_name=name,
            filter_subject=self.deliveries_subject(subscription_id),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=60.0,  # longer than a delivery's timeouts (a webhook's 10 s, an SMTP exchange's 30 s)
            max_ack_pending=1,
        )

    def bucket_configs(self) -> list[KeyValueConfig]:
        kept = {self.bulk_bucket: BULK_KEPT_S, self.links_bucket: LINKS_KEPT_S}  # (the others: for ever)
        names = (self.state_bucket, self.types_bucket, self.bulk_bucket, self.subscriptions_bucket, self.links_bucket)
        return [
            KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE, replicas=self.replicas, ttl=kept.get(name))
            for name in names
        ]

    def kv_stream(self, bucket: str) -> str:
        return KV_STREAM_PREFIX + bucket

    def kv_subjects(self, bucket: str) -> str:
        return f"$KV.{bucket}.>"


def export_name(workflow_id: str) -> str:
    """The object a removed workflow's log is exported to: its events as stored, one per line."""
    return f"{workflow_id}.jsonl"
