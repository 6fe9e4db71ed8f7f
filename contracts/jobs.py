"""Jobs: work the orchestrator hands to processors through the jobs work queue."""

from typing import Any, Literal

from pydantic import AwareDatetime

from contracts.envelope import Message
from contracts.ids import MessageId


class ProcessJob(Message):
    """Run one step of a workflow. `context` holds the recorded results of the steps before it."""

    kind: Literal["process_job"] = "process_job"
    job_id: MessageId
    workflow_type: str
    step: str
    attempt: int  # how many times the workflow entered this step's state
    try_number: int  # the try of the step within that entry
    context: dict[str, Any] = {}
    timeout_at: AwareDatetime | None = None  # when the orchestrator gives this try up: a worker stops it then
