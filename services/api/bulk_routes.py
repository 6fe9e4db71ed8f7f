"""The HTTP side of bulk actions (services/api/bulks.py): start one on the workflows a filter matches, and see how far
it got."""

from typing import Annotated, get_args
from urllib.parse import unquote_plus

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from contracts.auth import TokenHolder
from contracts.bulk import BULK_ACTIONS, BulkAction, BulkId, BulkRecord, BulkRefusal
from services.api.auth import may
from services.api.bulks import BulkBody, BulkRunner, matching_ids
from services.api.errors import error_answers
from services.api.schemas import BulkRequest, BulkView
from services.api.search import BadFilter
from services.api.workflows import Workflows

# What each action's commands take from the body.
TAKES: dict[str, tuple[str, ...]] = {
    "cancel": ("reason",),
    "reject": ("reason",),
    "approve": ("comment",),
    "retry": (),
    "archive": (),
    "migrate": ("to_version",),
}
PAGING = ("limit", "cursor")  # a bulk acts on every workflow the filter matches, not on a page of them
DEFAULT_LIMIT = 100  # what parse() checks when no limit is given
BulkIdPath = Annotated[str, PathParameter(pattern=get_args(BulkId)[1].pattern, description="a bulk's id")]


def may_bulk(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """The role the action's command takes (as for one workflow), checked before anything is read or sent."""
    action = connection.path_params.get("action")
    if action not in BULK_ACTIONS:
        raise NotFoundException(f"no bulk action {action!r}: one of {', '.join(BULK_ACTIONS)}")
    may(action)(connection, handler)


def view(record: BulkRecord, refusals: list[BulkRefusal]) -> BulkView:
    return BulkView.model_validate(record.progress() | {"refused": refusals})


def _body(action: str, data: BulkRequest) -> BulkBody:
    given = {name: value for name, value in data.model_dump().items() if value is not None}
    if unfit := sorted(set(given) - set(TAKES[action])):
        takes = " or ".join(TAKES[action]) or "nothing"
        raise ValidationException(f"body {unfit[0]}: {action} takes {takes}")
    if action == "migrate" and "to_version" not in given:
        raise ValidationException("body to_version: migrate needs the version to move the workflows to")
    return BulkBody(**given)


@post(
    "/workflows/bulk/{action:str}",
    operation_id="startBulk",
    tags=["bulk"],
    status_code=HTTP_202_ACCEPTED,
    guards=[may_bulk],
    responses=error_answers(400, 401, 403, 404, 413, 422, 429, 503),
)
async def start_bulk(
    request: Request[TokenHolder, str | None, State],
    state: State,
    workflows: NamedDependency[Workflows],
    action: Annotated[BulkAction, PathParameter(description="the command each matching workflow is sent")],
    data: JSONBody[BulkRequest | None] = None,
) -> Response[BulkView]:
    """Act on every workflow the filter matches now (the query string of `GET /workflows`, without `limit` and
    `cursor`): one ordinary command each, sent in the background, authorized as if sent alone (the role the action
    takes; approve and reject decide as the token's holder). Answers at once with the bulk's id and how many it acts
    on; `GET /bulk/{id}` and the WebSocket (`/ws?bulk=<id>`) report its progress. Body: `reason` (cancel, reject) or
    `comment` (approve)."""
    body = _body(action, data or BulkRequest())
    query = request.url.query
    if paging := sorted({unquote_plus(part).partition("=")[0] for part in query.split("&")} & set(PAGING)):
        raise BadFilter(f"{paging[0]}: a bulk acts on every workflow the filter matches: no limit or cursor")
    search = await workflows.search_of(query, DEFAULT_LIMIT)  # (a page's limit: not asked for here)
    ids = await matching_ids(state.index, search, state.settings.max_page, state.settings.bulk_max)
    bulks: BulkRunner = state.bulks
    record = await bulks.start(action, query, body, request.user, request.auth, ids)
    return Response(view(record, []), status_code=HTTP_202_ACCEPTED, headers={"Location": f"/bulk/{record.id}"})


@get("/bulk/{bulk_id:str}", operation_id="getBulk", tags=["bulk"], responses=error_answers(401, 404, 422, 503))
async def get_bulk(state: State, bulk_id: BulkIdPath) -> BulkView:
    """How far a bulk action got: applied (`done`), `refused` (each with its reason) and `remaining`, from any API
    process (the bulk's record lives in NATS)."""
    store = state.bulks.store
    record = await store.get(bulk_id)
    return view(record, await store.refusals(bulk_id))
