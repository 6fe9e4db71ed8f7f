"""What operators and the web page ask of the API itself: is it up, where is the broadcaster, who am I."""

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from contracts.auth import TokenHolder
from contracts.events import ENVELOPE_FIELDS
from services.api.errors import error_answers
from services.api.schemas import ClientConfig, Health, Identity
from services.api.settings import ApiSettings


@get(
    "/healthz",
    operation_id="health",
    tags=["operations"],
    responses={HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(Health, description="not connected to NATS yet")},
    security=[{}],  # open: no token needed (services/api/auth.py)
)
async def healthz(state: State) -> Response[Health]:
    """200 once connected to NATS with the streams ensured; 503 otherwise."""
    if state.link.ready:
        return Response(Health(status="ok"), status_code=HTTP_200_OK)
    return Response(Health(status="unavailable"), status_code=HTTP_503_SERVICE_UNAVAILABLE)


@get("/config", operation_id="clientConfig", tags=["operations"], responses=error_answers(401))
async def client_config(request: Request, state: State) -> ClientConfig:
    """Where the web page finds the broadcaster's WebSocket, and which fields of an event are its envelope."""
    settings: ApiSettings = state.settings
    envelope = sorted(ENVELOPE_FIELDS)
    if settings.public_broadcaster_url:
        return ClientConfig(broadcaster_url=settings.public_broadcaster_url, event_envelope=envelope)
    scheme = "wss" if request.url.scheme == "https" else "ws"
    broadcaster_url = f"{scheme}://{request.url.hostname}:{settings.broadcaster_port}/ws"
    return ClientConfig(broadcaster_url=broadcaster_url, event_envelope=envelope)


@get("/me", operation_id="whoAmI", tags=["operations"], responses=error_answers(401))
async def who_am_i(request: Request[TokenHolder, str | None, State]) -> Identity:
    """The token's holder: the name the log records for their decisions, their roles and their groups."""
    holder = request.user
    authenticated = request.auth is not None
    return Identity(
        name=holder.name, roles=sorted(holder.roles), groups=sorted(holder.groups), authenticated=authenticated
    )
