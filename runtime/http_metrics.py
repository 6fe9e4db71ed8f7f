"""/metrics for the Litestar services: request counts and latencies by path and status (e.g. the API's 200 / 202 / 409
answers to commands), plus what the service registers itself in prometheus_client's default registry."""

from litestar.plugins.prometheus import PrometheusConfig, PrometheusController


class MetricsController(PrometheusController):
    include_in_schema = False  # Prometheus' text format, for scrapers: not part of the JSON API the schema describes


def prometheus(service: str) -> tuple[PrometheusConfig, type[PrometheusController]]:
    config = PrometheusConfig(app_name=service, prefix=f"wf_{service}", group_path=True, exclude=["/metrics"])
    return config, MetricsController
