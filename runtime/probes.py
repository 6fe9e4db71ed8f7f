"""/healthz and /metrics for a service whose Litestar app keeps its parts as `state.service`: an object with `ready`
(200 once it may take work, 503 before) and `registry` (its Prometheus metrics)."""

from litestar import Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel


class Health(BaseModel):
    status: str


@get("/healthz")
async def healthz(state: State) -> Response[Health]:
    """200 once the service is ready (connected to NATS; the indexer: caught up with the read model too); 503 before."""
    ready = state.service.ready
    return Response(
        Health(status="ok" if ready else "unavailable"),
        status_code=HTTP_200_OK if ready else HTTP_503_SERVICE_UNAVAILABLE,
    )


@get("/metrics", media_type=CONTENT_TYPE_LATEST)
async def metrics(state: State) -> bytes:
    return generate_latest(state.service.registry)
