"""The envelope every message carries, so any event traces back to the command that caused it."""

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contracts.ids import MessageId, WorkflowId, new_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    message_id: MessageId = Field(default_factory=new_id)
    workflow_id: WorkflowId
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    causation_id: MessageId | None = None
    correlation_id: MessageId | None = None

    @model_validator(mode="after")
    def _root_correlates_to_itself(self) -> "Message":
        if self.correlation_id is None:
            object.__setattr__(self, "correlation_id", self.message_id)
        return self
