"""What every service shares to be watched: JSON log lines that carry the correlation id of the work in hand (so one
workflow can be followed across services), serving an ASGI app with a clean SIGTERM, and consumer lag as a metric."""

import asyncio
import contextvars
import json
import logging
import re
import sys

import uvicorn
from nats.js.client import JetStreamContext
from prometheus_client import Gauge

from runtime.stopping import exit_cleanly_on_sigterm

# Set by a handler for the command or job it works on; every log line written meanwhile carries it.
correlation_id = contextvars.ContextVar("correlation_id", default=None)

# A WebSocket's token comes in its URL (`?token=`), which uvicorn logs: never write it out.
TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"']+")
URL_LOGGERS = ("uvicorn.error", "uvicorn.access")  # uvicorn logs WebSocket handshakes to the first

# What the HTTP servers allow: an idle keep-alive connection is closed after 5 s, a WebSocket that does not answer a
# ping within 20 s is dropped, and no WebSocket message may be larger than a command.
SERVER_LIMITS = {"timeout_keep_alive": 5, "ws_ping_interval": 20.0, "ws_ping_timeout": 20.0, "ws_max_size": 64 * 1024}


class JsonLines(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "service": self.service,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)


def hide_tokens_in_urls(record: logging.LogRecord) -> bool:
    """A logging filter: the line, with any `token=` in a URL blanked."""
    message = record.getMessage()
    if "token=" in message:
        record.msg, record.args = TOKEN_IN_URL.sub(r"\1…", message), ()
    return True


def configure_logging(service: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLines(service))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # On the loggers themselves, not a handler: whatever handlers the web framework installs later, this holds.
    for name in URL_LOGGERS:
        logging.getLogger(name).addFilter(hide_tokens_in_urls)


def serve(app, host: str, port: int, https: dict[str, str] | None = None) -> None:
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
            gauge.labels(consumer=durable).set(info.num_pending + info.num_ack_pending)
        except Exception as error:  # a metric must never stop the service; the next round tries again
            logging.getLogger(__name__).warning("could not read the lag of %s: %s", durable, error)
        await asyncio.sleep(every_s)
