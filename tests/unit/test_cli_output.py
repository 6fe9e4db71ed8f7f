"""How `wf` shows an event: what happened, not the envelope every event carries."""

from contracts.events import TransitionTaken
from services.cli.output import event_line


def test_an_event_line_shows_what_happened_and_none_of_the_envelope():
    event = TransitionTaken(
        workflow_id="wf-1", trigger="approve", source="Waiting For Approval", dest="Finished", actor="ann",
        previous_hash="ab" * 32, causation_id="c-1",
    )  # fmt: skip
    line = event_line({"sequence": 7, "event": event.model_dump(mode="json")})

    assert line.split()[:4] == [
        "7",
        event.occurred_at.strftime("%Y-%m-%d"),
        event.occurred_at.strftime("%H:%M:%S"),
        "TransitionTaken",
    ]
    assert "trigger=approve" in line and "dest=Finished" in line and "actor=ann" in line
    for hidden in ("previous_hash", "message_id", "causation_id", "correlation_id", "schema_version", "workflow_id="):
        assert hidden not in line
