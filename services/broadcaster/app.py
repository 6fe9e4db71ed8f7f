"""The broadcaster's wiring: one ordered consumer on every workflow's events, fanned out to WebSocket clients.

Each client first gets `{"type": "heartbeat", "sequence": n}`: the position it starts from, `since` when it asked
for one, else the end of the log. Then `{"sequence": n, "event": {...}}` (contracts.events.RecordedEvent) for each
event after that position, in stream order: with `since`, it joins the live feed (live events queue up), replays the
log up to where the feed took over, then relays the queue, skipping the sequences already sent. No gap, no duplicate.
When idle it is sent a heartbeat with the position it is up to; reconnecting with `since` = the last sequence it got
(event or heartbeat) resumes exactly there. Every client needs one of the API's tokens (any role: it only reads); a
client whose token expires or is removed from the tokens file is closed with 4401. With `?bulk=<id>`, a client
follows a bulk action's progress instead (services/broadcaster/bulk.py)."""

import asyncio
import logging
from contextlib import aclosing

from litestar import Litestar, Response, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromQuery
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext
from pydantic import BaseModel, NonNegativeInt, TypeAdapter, ValidationError

from contracts.bulk import BulkId
from contracts.ids import WorkflowId
from contracts.topology import Topology
from runtime.http_metrics import prometheus
from runtime.nats_link import NatsLink, NotConnected, cancel_all
from runtime.tokens import TokenRefused, TokensFile, bearer_token, load_tokens
from services.broadcaster.bulk import BulkProgress
from services.broadcaster.hub import Follower, Hub
from services.broadcaster.messages import event_message, heartbeat_message
from services.broadcaster.replay import LogReplay
from services.broadcaster.settings import BroadcasterSettings

log = logging.getLogger(__name__)

WS_NORMAL = 1000
WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013
WS_UNAUTHORIZED = 4401  # an application's code (4000-4999): HTTP's 401, which a browser cannot see on a WebSocket

WORKFLOW_ID = TypeAdapter(WorkflowId)
BULK_ID = TypeAdapter(BulkId)
SEQUENCE = TypeAdapter(NonNegativeInt)


RESUME_HEARTBEAT_S = 1.0


class EventFeed:
    """The process's one ordered consumer on the events stream, from new events on, feeding the hub."""

    def __init__(self, topology: Topology, hub: Hub) -> None:
        self._topology = topology
        self._hub = hub

    async def start(self, nc: Client) -> None:
        await nc.jetstream().subscribe(
            self._topology.events_subject(),
            stream=self._topology.events_stream,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            # Two missed heartbeats make nats-py recreate the consumer where it stopped: after a server restart
            # clients see events again within ~2 s, not the 10 s of the default 5 s heartbeat.
            idle_heartbeat=RESUME_HEARTBEAT_S,
            cb=self._relay,
        )

    async def _relay(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        try:
            text = event_message(sequence, message.data)
        except ValidationError as error:
            log.error("events stream sequence %d is not an event, not relayed: %s", sequence, error)
            return
        self._hub.publish(self._topology.workflow_id_of(message.subject), sequence, text)


class Session:
    """One client's connection: what it asked for, and the sequence it has been sent up to."""

    def __init__(
        self,
        socket: WebSocket,
        follower: Follower,
        state: State,
        start: int,
        replay_until: int | None,
        token: str | None,
    ) -> None:
        self.socket, self.follower = socket, follower
        self.token = token  # None when WF_AUTH=off
        self.tokens: TokensFile | None = state.tokens
        self.replay_until = replay_until  # resuming: the log is replayed from `start` up to here, then live
        self.hub: Hub = state.hub
        self.replay: LogReplay = state.replay
        self.link: NatsLink = state.link
        self.settings: BroadcasterSettings = state.settings
        # Every event the client asked for, up to this sequence, has been sent: later ones only are sent.
        self.position = start

    async def send_events(self) -> None:
        """The position, the log after it when resuming, then the live feed, for as long as the client stays."""
        await self.socket.send_text(heartbeat_message(self.position))
        if self.replay_until is not None:
            await self._replay(self.link.js, self.replay_until)
        while True:
            try:
                async with asyncio.timeout(self.settings.heartbeat_s):
                    sequence, message = await self.follower.queue.get()
            except TimeoutError:
                # Idle: the hub handed this follower every event up to its last one, and the queue is empty.
                self.position = max(self.position, self.hub.last_sequence)
                await self.socket.send_text(heartbeat_message(self.position))
                continue
            await self._send(sequence, message)

    async def _replay(self, js: JetStreamContext, until: int) -> None:
        async with aclosing(self.replay.pages(js, self.position, until, self.follower.workflow_id)) as pages:
            async for page in pages:
                for sequence, message in page:
                    await self._send(sequence, message)

    async def _send(self, sequence: int, message: str) -> None:
        if sequence > self.position:  # the seam: an event both replayed and queued live is sent once
            await self.socket.send_text(message)
            self.position = sequence

    async def serve(self) -> None:
        """Send events until the client leaves, falls so far behind that the hub dropped it, or its token no longer
        holds."""

        sending = asyncio.create_task(self.send_events())
        listening = asyncio.create_task(until_client_leaves(self.socket))
        dropped = asyncio.create_task(self.follower.dropped.wait())
        tasks = {sending, listening, dropped}
        refused = None  # WF_AUTH=off: no token to lose
        if self.tokens is not None and self.token is not None:
            refused = asyncio.create_task(self.tokens.until_refused(self.token))
            tasks.add(refused)
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await cancel_all(pending)
        if refused is not None and refused in done:
            log.info("closed a client whose token no longer holds: %s", refused.result())
            await self._close(WS_UNAUTHORIZED, refused.result())
            return
        if dropped in done:
            log.warning("dropped a client that fell %d events behind", self.follower.queue.maxsize)
            await self._close(WS_TRY_AGAIN_LATER, "too slow: reconnect to resume")
            return
        error = sending.exception() if sending in done else None
        if error is not None and not isinstance(error, WebSocketDisconnect):
            log.warning("could not serve a client: %r", error)
            await self._close(WS_TRY_AGAIN_LATER, "could not read the log: reconnect to resume")
        elif listening in done and not isinstance(listening.exception(), WebSocketDisconnect):
            log.info("client connection ended: %r", listening.exception())

    async def _close(self, code: int, reason: str) -> None:
        await close(self.socket, code, reason, self.settings.close_timeout_s)


async def close(socket: WebSocket, code: int, reason: str, timeout_s: float) -> None:
    try:
        # The close frame waits behind what the client has not read yet: bound the wait.
        await asyncio.wait_for(socket.close(code=code, reason=reason[:120]), timeout_s)
    except (TimeoutError, WebSocketDisconnect, OSError) as error:
        log.info("could not close a client's connection cleanly: %r", error)


async def until_client_leaves(socket: WebSocket) -> None:
    while True:
        await socket.receive_data(mode="text")  # clients have nothing to say; raises when they leave


async def follow_bulk(socket: WebSocket, state: State, bulk_id: str, token: str | None) -> None:
    """A bulk action's progress (services/broadcaster/bulk.py) until it has finished (then closed with 1000), the
    client leaves, or its token no longer holds (4401)."""
    progress = BulkProgress(state.link.js, state.settings.topology, bulk_id)
    try:
        if not await progress.exists():
            return await refuse(socket, WS_POLICY_VIOLATION, f"bulk: no bulk {bulk_id}")
    except (NatsError, NotConnected) as error:
        return await refuse(socket, WS_TRY_AGAIN_LATER, f"could not read the bulk: {error!r}")
    await socket.accept()

    async def send_progress() -> None:
        async with aclosing(progress.messages()) as messages:
            async for message in messages:
                await socket.send_text(message)

    sending = asyncio.create_task(send_progress())
    tasks = {sending, asyncio.create_task(until_client_leaves(socket))}
    tokens: TokensFile | None = state.tokens
    refused = asyncio.create_task(tokens.until_refused(token)) if tokens is not None and token is not None else None
    tasks |= {refused} if refused else set()
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    await cancel_all(pending)
    timeout_s = state.settings.close_timeout_s
    if refused in done:
        await close(socket, WS_UNAUTHORIZED, refused.result(), timeout_s)
    elif sending in done and sending.exception() is None:
        await close(socket, WS_NORMAL, "the bulk has finished", timeout_s)
    elif sending in done and not isinstance(sending.exception(), WebSocketDisconnect):
        log.warning("could not follow bulk %s: %r", bulk_id, sending.exception())
        await close(socket, WS_TRY_AGAIN_LATER, "could not read the bulk: reconnect", timeout_s)


async def refuse(socket: WebSocket, code: int, reason: str) -> None:
    """Accept, then close at once: unlike a refused handshake (a bare 403), a browser sees the code and reason."""
    await socket.accept()
    await socket.close(code=code, reason=reason[:120])


@websocket("/ws")
async def events_socket(
    socket: WebSocket,
    state: State,
    workflow_id: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    token: FromQuery[str | None] = None,
    bulk: FromQuery[str | None] = None,
) -> None:
    """Every event from now on, or after sequence `since` (the last one the client saw), as JSON
    `{"sequence", "event"}`, after a first `{"type": "heartbeat", "sequence"}` that gives the position it starts
    from; only one workflow's with `?workflow_id=`. With `?bulk=<id>` instead: that bulk action's progress
    (services/broadcaster/bulk.py). The token comes as `?token=` (browsers cannot set a WebSocket's headers) or as
    `Authorization: Bearer`; without a valid one the connection is closed with 4401, as it is later when the token
    expires or is removed from the tokens file."""
    tokens: TokensFile | None = state.tokens
    if tokens is not None:
        token = token or bearer_token(socket.headers.get("Authorization"))
        if token is None:
            return await refuse(socket, WS_UNAUTHORIZED, "a token is needed: ?token=<token> or Authorization: Bearer")
        try:
            tokens.admit(token)
        except TokenRefused as refusal:
            return await refuse(socket, WS_UNAUTHORIZED, str(refusal))
    if workflow_id is not None:
        try:
            WORKFLOW_ID.validate_python(workflow_id)
        except ValidationError as error:
            return await refuse(socket, WS_POLICY_VIOLATION, f"workflow_id: {error.errors()[0]['msg']}")
    after: int | None = None  # `since`, read
    if since is not None:
        try:
            after = SEQUENCE.validate_strings(since)
        except ValidationError as error:
            return await refuse(socket, WS_POLICY_VIOLATION, f"since: {error.errors()[0]['msg']}")
    if bulk is not None:
        try:
            BULK_ID.validate_python(bulk)
        except ValidationError as error:
            return await refuse(socket, WS_POLICY_VIOLATION, f"bulk: {error.errors()[0]['msg']}")
        if workflow_id is not None or since is not None:
            return await refuse(socket, WS_POLICY_VIOLATION, "bulk: follows a bulk action, not workflow_id or since")
    if not state.link.ready:
        return await refuse(socket, WS_TRY_AGAIN_LATER, "not connected to NATS yet")
    if bulk is not None:
        return await follow_bulk(socket, state, bulk, token)
    follower = state.hub.follow(workflow_id)  # before accepting: nothing published after the handshake is missed
    try:
        try:
            # Read after the follower joined the feed: every event after `end` reaches it live.
            end = await state.replay.log_end(state.link.js)
        except (NatsError, NotConnected) as error:
            return await refuse(socket, WS_TRY_AGAIN_LATER, f"could not read the log: {error!r}")
        if after is None:  # a new client starts at the end of the log
            session = Session(socket, follower, state, start=end, replay_until=None, token=token)
        elif after <= end:
            session = Session(socket, follower, state, start=after, replay_until=end, token=token)
        else:
            reason = f"since {after} is past the end of the log ({end}): start again without since"
            return await refuse(socket, WS_POLICY_VIOLATION, reason)
        await socket.accept()
        await session.serve()
    finally:
        state.hub.leave(follower)


class Health(BaseModel):
    status: str
    clients: int


@get("/healthz", operation_id="health")
async def healthz(state: State) -> Response[Health]:
    """200 once connected to NATS and consuming the events stream; 503 otherwise."""
    health = Health(status="ok" if state.link.ready else "unavailable", clients=len(state.hub))
    return Response(health, status_code=HTTP_200_OK if state.link.ready else HTTP_503_SERVICE_UNAVAILABLE)


def create_app(settings: BroadcasterSettings | None = None) -> Litestar:
    settings = settings or BroadcasterSettings()
    tokens = load_tokens(settings)  # first: with no tokens, nothing else starts
    hub = Hub(settings.client_queue_size)
    link = NatsLink(
        settings,
        name="broadcaster",
        streams=[settings.topology.events_stream],
        on_connected=EventFeed(settings.topology, hub).start,
    )
    replay = LogReplay(settings.topology, settings.replay_page_size, settings.replay_concurrency)
    metrics, metrics_route = prometheus("broadcaster")
    return Litestar(
        route_handlers=[events_socket, healthz, metrics_route],
        middleware=[metrics.middleware],
        state=State({"settings": settings, "link": link, "hub": hub, "replay": replay, "tokens": tokens}),
        # The tokens file is checked every second even when nobody connects: open connections learn of a removal.
        lifespan=[link.lifespan] + ([tokens.watching] if tokens else []),
        logging_config=None,  # not Litestar's own: its lines go through runtime.observability's, as JSON
    )
