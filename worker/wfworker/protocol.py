"""The job protocol on the wire (docs/job-protocol.md), as a worker sees it: what a job carries, where it comes from,
and the messages that answer it. A tolerant reader: fields a newer orchestrator adds are ignored."""

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

RESULT_MAX_BYTES = 16 * 1024  # the orchestrator refuses a larger result (contracts.commands.MAX_RESULT_BYTES)
ACK_WAIT_S = 5.0  # a job not acked nor marked in progress for this long goes to another worker
HEARTBEAT_S = 1.5  # how often a running job is marked in progress (well within ACK_WAIT_S)
MAX_DELIVER = 5
# A ping every 5 s, three unanswered: a server gone silent (a power cut, a partition) is given up for another within
# about 20 s, not after nats-py's default of minutes, during which the worker would take no job.
LIVENESS = {"ping_interval": 5, "max_outstanding_pings": 3}


class JobMessage(BaseModel):
    """One try of one step of one workflow (contracts.jobs.ProcessJob)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_id: str
    workflow_id: str
    correlation_id: str | None = None
    job_id: str
    workflow_type: str
    step: str
    attempt: int
    try_number: int
    context: dict[str, Any] = {}
    timeout_at: AwareDatetime | None = None


def jobs_subject(prefix: str, workflow_type: str, step: str) -> str:
    return f"{prefix}.jobs.{workflow_type}.{step}"


def jobs_stream(prefix: str) -> str:
    return f"{prefix.upper()}_JOBS"


def events_stream(prefix: str) -> str:
    return f"{prefix.upper()}_EVENTS"


def dead_jobs_subject(prefix: str) -> str:
    return f"{prefix}.dead.jobs"


def results_subject(prefix: str, workflow_id: str) -> str:
    return f"{prefix}.results.{workflow_id}"


def events_subject(prefix: str, workflow_id: str) -> str:
    return f"{prefix}.events.{workflow_id}"


def completed(job: JobMessage, result: dict[str, Any], now: datetime) -> dict[str, Any]:
    return _answer(job, now) | {"kind": "complete_job", "result": result}


def failed(job: JobMessage, error: str, error_type: str, retryable: bool, now: datetime) -> dict[str, Any]:
    return _answer(job, now) | {
        "kind": "fail_job",
        "error": error[:2000],
        "error_type": error_type[:64],
        "retryable": retryable,
    }


def _answer(job: JobMessage, now: datetime) -> dict[str, Any]:
    # One result per job however often it runs: its id is the job's, which the broker deduplicates (Nats-Msg-Id).
    return {
        "schema_version": 1,
        "message_id": f"{job.job_id}-result",
        "workflow_id": job.workflow_id,
        "occurred_at": now.isoformat(),
        "causation_id": job.message_id,
        "correlation_id": job.correlation_id,
        "job_id": job.job_id,
    }


# What tells a running job that its try was given up: the workflow ended by hand, or the try was recorded as over
# (it timed out, or another run of it already answered).
ABANDONING_EVENTS = {"WorkflowCancelled", "WorkflowTerminated"}
CLOSING_EVENTS = {"StepAttemptFailed", "StepCompleted"}


def abandons(event: dict[str, Any], job_id: str) -> bool:
    kind = event.get("type")
    return kind in ABANDONING_EVENTS or (kind in CLOSING_EVENTS and event.get("job_id") == job_id)
