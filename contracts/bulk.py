"""Bulk actions: one ordinary command for each workflow a filter matched when the bulk started, sent by the API in the
background. What the API's replicas and the broadcaster share about one lives in the KV bucket `<prefix>_bulk`:

- `<bulk id>.meta`: its BulkRecord: what it does, for whom, how far it got, and who runs it (a lease). Every version
  written is a progress report: the broadcaster relays each to the WebSocket clients that follow the bulk;
- `<bulk id>.ids.<n>`: the ids of the workflows it acts on, IDS_PER_KEY to a key, written once, before the record;
- `<bulk id>.refused.<workflow id>`: a BulkRefusal, for each workflow whose command was refused.

Each workflow's command has the id `bulk-<bulk id>-<workflow id>`: sent again after a restart, it is applied once."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints

BULK_ACTIONS = ("cancel", "approve", "reject", "retry", "archive")
BulkAction = Literal["cancel", "approve", "reject", "retry", "archive", "migrate"]
# A new_id(): with the prefix and a workflow id (at most 64) the command's id stays within contracts.ids.CommandId.
BulkId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
IDS_PER_KEY = 1000  # ~70 KB of ids at most: far below the broker's message size
REASON_KEPT = 500  # characters of a refusal's reason that are kept
PUBLIC_FIELDS = {"id", "action", "filter", "by", "total", "done", "refused", "started_at", "finished_at", "stopped"}


def meta_key(bulk_id: str) -> str:
    return f"{bulk_id}.meta"


def ids_key(bulk_id: str, chunk: int) -> str:
    return f"{bulk_id}.ids.{chunk}"


def refused_key(bulk_id: str, workflow_id: str) -> str:
    return f"{bulk_id}.refused.{workflow_id}"


def command_id(bulk_id: str, workflow_id: str) -> str:
    """The id of the bulk's command to one workflow: the same whoever sends it, however often."""
    return f"bulk-{bulk_id}-{workflow_id}"


class BulkRefusal(BaseModel):
    """A workflow the bulk's command could not act on, and why (a CommandRejected's code and reason, or
    `unknown_workflow` for one gone since the bulk started)."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    code: str
    reason: str


class BulkRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: BulkId
    action: BulkAction
    filter: str  # the query string of GET /workflows that found its workflows
    reason: str = ""  # given to cancel and reject
    comment: str = ""  # given to approve
    by: str  # who started it: every command is sent as them (approve and reject decide as them)
    groups: list[str] = []  # and the groups they were in
    to_version: int | None = None  # given to migrate
    # The digest of the token that started it: its commands are sent while that token holds (None: WF_AUTH=off).
    token_digest: str | None = None
    total: int
    chunks: int  # keys of ids
    started_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    stopped: str | None = None  # why it ended before acting on every workflow
    # Its first `position` workflows are settled, `done` of them applied and `refused` refused: a runner that takes it
    # over goes on from there (sending a command again is harmless: it is applied once).
    position: int = 0
    done: int = 0
    refused: int = 0
    lease_holder: str | None = None  # the API process running it, until `lease_until`; then any other may take it
    lease_until: AwareDatetime | None = None

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.refused

    def leased_at(self, now: datetime) -> bool:
        """Someone runs it now."""
        return self.lease_until is not None and self.lease_until > now

    def progress(self) -> dict[str, Any]:
        """What anyone may see of it (not the token's digest, nor the lease), `refused` being a count here."""
        return self.model_dump(mode="json", include=PUBLIC_FIELDS) | {"remaining": self.remaining}
