"""A worker's /metrics (Prometheus) and /healthz (204 while it takes jobs, 503 before and while it stops), served
from a thread by the standard library's WSGI server."""

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.jobs = Counter("wf_jobs_total", "Jobs run, by step and outcome", ["step", "outcome"], registry=registry)
        self.job_seconds = Histogram("wf_job_seconds", "Time to run a job, by step", ["step"], registry=registry)
        self.dead_letters = Counter("wf_dead_letters_total", "Unreadable jobs dead-lettered", registry=registry)
        self.errors = Counter(
            "wf_job_errors_total",
            "Runs whose answer could not be sent (the job is delivered again), by step and error",
            ["step", "error"],
            registry=registry,
        )
        self.lag = Gauge("wf_consumer_pending", "Jobs waiting for the workers", ["consumer"], registry=registry)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every few seconds is not worth a log line


class HealthServer:
    def __init__(self, metrics: WorkerMetrics, healthy: Callable[[], bool]) -> None:
        self.metrics_app, self.healthy = make_wsgi_app(metrics.registry), healthy
        self.server: WSGIServer | None = None

    def app(self, environ, start_response):
        if environ.get("PATH_INFO") == "/healthz":
            status = "204 No Content" if self.healthy() else "503 Service Unavailable"
            start_response(status, [])
            return [b""]
        return self.metrics_app(environ, start_response)

    def start(self, host: str, port: int) -> None:
        self.server = make_server(host, port, self.app, handler_class=_Quiet)
        threading.Thread(target=self.server.serve_forever, name="wfworker-http", daemon=True).start()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_port

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
