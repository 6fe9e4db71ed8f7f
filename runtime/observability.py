"""What every service shares to be watched: JSON log lines that carry the correlation id of the work in hand (so one
workflow can be followed across services), serving an ASGI app with a clean SIGTERM, and consumer lag as a metric."""

import asyncio
import logging
import re
import sys
from typing import TextIO, TypedDict

import structlog
import uvicorn
from nats.js.client import JetStreamContext
from prometheus_client import Gauge
from structlog.typing import EventDict, Processor

from runtime.settings import HttpsFiles
from runtime.stopping import exit_cleanly_on_sigterm

# A WebSocket's token comes in its URL (`?token=`), which uvicorn logs: never write it out.
TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"']+")


# What the HTTP servers allow: an idle keep-alive connection is closed after 5 s, a WebSocket that does not answer a
# ping within 20 s is dropped, and no WebSocket message may be larger than a command.
class ServerLimits(TypedDict):
    timeout_keep_alive: int
    ws_ping_interval: float
    ws_ping_timeout: float
    ws_max_size: int


SERVER_LIMITS = ServerLimits(timeout_keep_alive=5, ws_ping_interval=20.0, ws_ping_timeout=20.0, ws_max_size=64 * 1024)


def hide_tokens_in_urls(_logger: object, _method: str, line: EventDict) -> EventDict:
    """A token in a URL's `?token=` (uvicorn logs WebSocket handshakes with theirs) is never written out."""
    message = line.get("event")
    if isinstance(message, str) and "token=" in message:
        line["event"] = TOKEN_IN_URL.sub(r"\1…", message)
    return line


def configure_logging(service: str, level: int = logging.INFO, stream: TextIO = sys.stdout) -> None:
    """One JSON line per record on `stream` (stdout), for this service: its own loggers (structlog's or the standard library's)
    and its libraries' (uvicorn, FastStream, nats, Litestar, httpx) alike, with the ids bound for the work in hand
    (`work_on`)."""

    def add_service(_logger: object, _method: str, line: EventDict) -> EventDict:
        line["service"] = service
        return line

    stamped: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        add_service,
    ]
    structlog.configure(
        processors=[*stamped, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*stamped, structlog.stdlib.ExtraAdder()],  # a record's `extra=` (the worker library's ids)
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            hide_tokens_in_urls,
            structlog.processors.format_exc_info,  # a traceback, as one string under "exception"
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Loggers made before this with handlers or a level of their own (FastStream's writes plain text to stderr;
    # uvicorn sets its own when it configures logging) write through the root's handler, at the root's level.
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.propagate, logger.disabled = True, False
            logger.setLevel(logging.NOTSET)


def work_on(*, correlation_id: str | None, **ids: str | None):
    """Bind the ids of the message in hand (its workflow, command or job, and the correlation id that follows one
    workflow across services) to every line logged until the block ends: `with work_on(...):`. Each asyncio task
    has its own, so messages handled at once do not mix."""
    return structlog.contextvars.bound_contextvars(correlation_id=correlation_id, **ids)


def serve(app, host: str, port: int, https: HttpsFiles | None = None) -> None:
    """Run an ASGI app with uvicorn, within SERVER_LIMITS, until SIGTERM or Ctrl-C, then exit 0 once in-flight work
    is done. `https`: uvicorn's certificate and key options (ServiceSettings.https), to serve HTTPS."""

    # uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler that was in place before it:
    # this one, so that a clean stop exits 0 rather than as "killed by SIGTERM".
    exit_cleanly_on_sigterm()
    uvicorn.run(
        app, host=host, port=port, timeout_graceful_shutdown=10, log_config=None, **SERVER_LIMITS, **(https or {})
    )


async def report_consumer_lag(js: JetStreamContext, stream: str, durable: str, gauge: Gauge, every_s: float = 5.0):
    """Keep `gauge` at the number of messages waiting for the consumer (its lag), until cancelled."""
    while True:
        try:
            info = await js.consumer_info(stream, durable)
            gauge.labels(consumer=durable).set((info.num_pending or 0) + (info.num_ack_pending or 0))
        except Exception as error:  # a metric must never stop the service; the next round tries again
            logging.getLogger(__name__).warning("could not read the lag of %s: %s", durable, error)
        await asyncio.sleep(every_s)
