"""What the broadcaster sends a client: each event as `{"sequence", "event"}` (contracts.events.RecordedEvent), and,
when nothing else went out for a while, `{"type": "heartbeat", "sequence"}`: every event the client asked for up to
that sequence has been sent, so it may resume from there."""

import json

from contracts.events import EVENT, RecordedEvent


def event_message(sequence: int, data: bytes) -> str:
    """The message for the event stored at `sequence`; raises pydantic's ValidationError when `data` is no event."""
    return RecordedEvent(sequence=sequence, event=EVENT.validate_json(data)).model_dump_json()


def heartbeat_message(sequence: int) -> str:
    return json.dumps({"type": "heartbeat", "sequence": sequence})
