"""Identifiers: sortable ids for new things, and the shapes ids must have to be safe in NATS subjects."""

import os
import time
from typing import Annotated

from pydantic import StringConstraints

# One subject token: no dots, spaces, wildcards or control characters.
WorkflowId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Ids the system derives from a command's id (`<command id>-<n>`, `<job id>-result`) are longer than it, so a
# client may choose a command id of up to 128 characters and every id derived from it still fits.
CommandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:.-]{1,128}$")]
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_:.-]{1,200}$")]


def new_id() -> str:
    """A UUIDv7 as 32 hex digits: unique, and sorts by creation time."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return f"{value:032x}"


def job_id(workflow_id: str, visit: int, try_number: int) -> str:
    """A step's job: one per try, in the visit (the state entry) that runs it. Seeded outputs are drawn by it."""
    return f"{workflow_id}-{visit}-{try_number}"
