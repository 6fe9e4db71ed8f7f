"""Wiring: the orchestrator's parts (service.py: the command intake on a pull consumer of the commands stream, the
sweeper, retention) on its broker's connection, served by FastStream's ASGI app (/metrics, /healthz)."""

import logging

from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry, make_asgi_app

from runtime.draining import GRACEFUL_TIMEOUT_S
from runtime.nats_protocol import read_every_subject_as_the_server_sends_it
from services.orchestrator.intake import log
from services.orchestrator.metrics import OrchestratorMetrics
from services.orchestrator.service import OrchestratorService
from services.orchestrator.settings import OrchestratorSettings


def create_app(settings: OrchestratorSettings) -> AsgiFastStream:
    read_every_subject_as_the_server_sends_it()  # any client chooses the command subjects' last token
    registry = CollectorRegistry()
    # Not FastStream's Prometheus middleware: it labels by subject, and every workflow has a subject of its own, so
    # its series grew with every workflow (measured: 44 MB of /metrics at 5 700 workflows). Ours are bounded.
    metrics = OrchestratorMetrics(registry)
    broker = NatsBroker(
        **settings.broker_connection("orchestrator"),
        max_reconnect_attempts=-1,
        logger=log,  # FastStream's lines in our JSON log, its per-message ones at DEBUG (not written)
        log_level=logging.DEBUG,
        graceful_timeout=GRACEFUL_TIMEOUT_S,
    )
    service = OrchestratorService(settings, broker, metrics)
    return AsgiFastStream(
        broker,
        asgi_routes=[("/metrics", make_asgi_app(registry)), ("/healthz", make_ping_asgi(broker, timeout=2.0))],
        logger=log,
        on_startup=[service.connect],
        after_startup=[service.start],
        on_shutdown=[service.stop],
    )
