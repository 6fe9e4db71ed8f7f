"""Every service logs one JSON line per record, its own and its libraries' alike, with the ids of the work in hand."""

import asyncio
import io
import json
import logging
import logging.config

import pytest
import structlog
from uvicorn.config import LOGGING_CONFIG

from runtime.observability import configure_logging, work_on


@pytest.fixture
def lines():
    """What the service writes, line by line, each read as JSON."""
    written = io.StringIO()
    configure_logging("orchestrator", stream=written)
    yield lambda: [json.loads(line) for line in written.getvalue().splitlines()]
    logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    structlog.reset_defaults()


def test_standard_library_and_structlog_lines_are_json_with_the_service_and_the_ids_in_hand(lines):
    with work_on(correlation_id="corr-1", workflow_id="wf-1", command_id="c-1"):
        logging.getLogger("orchestrator").info("approve %s: %s", "wf-1", "TransitionTaken")
        structlog.get_logger("faststream").warning("fetched", batch=3)

    first, second = lines()
    assert first["message"] == "approve wf-1: TransitionTaken"
    assert (first["service"], first["level"], first["logger"]) == ("orchestrator", "info", "orchestrator")
    assert (first["correlation_id"], first["workflow_id"], first["command_id"]) == ("corr-1", "wf-1", "c-1")
    assert first["time"].endswith("Z") and first["time"][:4].isdigit()
    assert (second["message"], second["batch"], second["level"]) == ("fetched", 3, "warning")
    assert second["command_id"] == "c-1"


def test_the_ids_of_one_message_are_on_no_line_after_it_nor_on_another_tasks(lines):
    async def handle(workflow_id: str, pause: float) -> None:
        with work_on(correlation_id=f"corr-{workflow_id}", workflow_id=workflow_id):
            await asyncio.sleep(pause)
            logging.getLogger("orchestrator").info("handled %s", workflow_id)

    async def both() -> None:
        await asyncio.gather(handle("wf-a", 0.02), handle("wf-b", 0.01))

    asyncio.run(both())
    logging.getLogger("orchestrator").info("idle")

    handled = {line["message"]: line.get("workflow_id") for line in lines()}
    assert handled == {"handled wf-b": "wf-b", "handled wf-a": "wf-a", "idle": None}


def test_an_error_line_carries_its_traceback(lines):
    try:
        raise RuntimeError("it broke")
    except RuntimeError:
        logging.getLogger("processor").exception("job j-1 failed")

    [line] = lines()
    assert line["message"] == "job j-1 failed" and line["level"] == "error"
    assert "RuntimeError: it broke" in line["exception"] and "Traceback" in line["exception"]


def test_a_token_in_a_logged_url_is_not_written_out(lines):
    url = "/ws?since=3&token=s3cret-TOKEN_x&workflow_id=w1"
    logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", url)

    [line] = lines()
    assert line["message"] == '127.0.0.1:5 - "WebSocket /ws?since=3&token=…&workflow_id=w1" [accepted]'
    assert "s3cret" not in json.dumps(line)


def test_loggers_a_library_configured_before_write_through_the_same_lines():
    logging.config.dictConfig(LOGGING_CONFIG)  # uvicorn's own: handlers of its own, not propagated to the root
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # as uvicorn.Config(log_level="warning") does
    written = io.StringIO()
    configure_logging("api", stream=written)
    try:
        logging.getLogger("uvicorn.access").info("GET /workflows 200")
        logging.getLogger("uvicorn.error").info("Started server process")
        lines = [json.loads(line) for line in written.getvalue().splitlines()]
        assert [(line["logger"], line["service"], line["message"]) for line in lines] == [
            ("uvicorn.access", "api", "GET /workflows 200"),
            ("uvicorn.error", "api", "Started server process"),
        ]
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
        structlog.reset_defaults()
