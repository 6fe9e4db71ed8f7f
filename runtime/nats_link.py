"""The service's NATS connection, made in the background so the HTTP side can answer /healthz 503 until it is up."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from runtime.settings import ServiceSettings
from runtime.streams import wait_until_created

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0
CANCEL_AGAIN_AFTER_S = 0.1


class NotConnected(Exception):
    """NATS is not reachable (yet): the request cannot be served now."""


async def cancel_all(tasks: set[asyncio.Task]) -> None:
    """Cancel the tasks and wait until they have ended. Cancel again any that runs on: on Python 3.11,
    `asyncio.wait_for` (which nats-py awaits replies and connections with) drops a cancellation that arrives with its
    result, and nats-py then carries on."""
    while running := {task for task in tasks if not task.done()}:
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=CANCEL_AGAIN_AFTER_S)


class NatsLink:
    """Connects as the service `name` (retrying for ever), waits until the streams it uses exist and those it writes
    to answer (the orchestrator creates them), runs `on_connected` (e.g. to subscribe), then reports ready while the
    connection is up."""

    def __init__(
        self,
        settings: ServiceSettings,
        name: str,
        streams: Sequence[str],
        writes: Sequence[str] = (),
        on_connected: Callable[[Client], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._name = name
        self._streams, self._writes = streams, writes
        self._on_connected = on_connected
        self._client = Client()
        self._ensured = False

    @property
    def ready(self) -> bool:
        return self._ensured and self._client.is_connected

    @property
    def nc(self) -> Client:
        if not self.ready:
            raise NotConnected("not connected to NATS")
        return self._client

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream()

    async def _connect(self) -> None:
        await self._client.connect(
            **self._settings.nats_connection(self._name),
            name=self._name,
            max_reconnect_attempts=-1,  # also retries the first connect until a server answers
            # nats-py annotates it int, but sleeps it as seconds: a float is what it means.
            reconnect_time_wait=RETRY_DELAY_S,  # pyright: ignore[reportArgumentType]
            connect_timeout=2,
            error_cb=self._on_error,
        )
        while True:
            try:
                await wait_until_created(self._client.jetstream(), self._streams, self._writes)
                if self._on_connected:
                    await self._on_connected(self._client)
                break
            except Exception:
                log.exception("could not set up the streams, buckets and subscriptions; retrying")
                await asyncio.sleep(RETRY_DELAY_S)
        self._ensured = True
        if server := self._client.connected_url:  # (None if it dropped meanwhile); its netloc would show the password
            log.info("%s connected to NATS at %s:%s", self._name, server.hostname, server.port)

    async def _on_error(self, error: Exception) -> None:
        log.warning("NATS: %s", error)

    @asynccontextmanager
    async def lifespan(self, *_: object) -> AsyncIterator[None]:
        """Connect in the background for the app's lifetime; drain the connection on the way out."""
        connecting = asyncio.create_task(self._connect(), name=f"{self._name}-nats-connect")
        try:
            yield
        finally:
            await cancel_all({connecting})
            if self._client.is_connected:
                await self._client.drain()
            elif not self._client.is_closed:
                await self._client.close()
