"""A NATS server can vanish without closing its connections: a power cut, a partition, a killed container whose
goodbye never arrives. A service or a worker connected to it must notice within seconds and fail over, not wait on the
dead link for nats-py's default of minutes (CI saw an orchestrator do so for 4 minutes after a cluster node was
killed, taking no command meanwhile)."""

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from wfworker import Worker

from runtime.settings import ServiceSettings

NOTICED_WITHIN_S = 30  # LIVENESS gives a silent server up after 15 to 20 s; nats-py's default, after 4 to 6 minutes


class SilenceableProxy:
    """A TCP proxy in front of a server that can go silent: the connections it carries stay open, but nothing passes
    on them either way any more. A connection made afterwards passes."""

    def __init__(self, upstream: str) -> None:
        address = urlsplit(upstream)
        self._upstream = (address.hostname or "127.0.0.1", address.port or 4222)
        self._silenced_before = 0  # connections numbered below it are silent
        self._made = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "SilenceableProxy":
        self._server = await asyncio.start_server(self._carry, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def go_silent(self) -> None:
        self._silenced_before = self._made

    async def _carry(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        number, self._made = self._made, self._made + 1
        server_reader, server_writer = await asyncio.open_connection(*self._upstream)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if number >= self._silenced_before:  # else dropped: the peer hears nothing, and no goodbye
                    sink.write(data)
                    await sink.drain()

        try:
            await asyncio.gather(pump(client_reader, server_writer), pump(server_reader, client_writer))
        except ConnectionError:
            pass
        finally:
            client_writer.close()
            server_writer.close()


async def as_a_service(url: str, on_reconnect: Callable[[], Awaitable[None]]) -> Client:
    """As every service connects: ServiceSettings.nats_connection (the NatsLink, FastStream's broker, the workers)."""
    options = ServiceSettings(NATS_URL=url).nats_connection("api")
    return await nats.connect(
        **options, max_reconnect_attempts=-1, reconnect_time_wait=0.2, reconnected_cb=on_reconnect
    )


async def as_a_worker(url: str, on_reconnect: Callable[[], Awaitable[None]]) -> Client:
    """As a team's worker connects with the worker library's defaults."""
    worker = Worker(url, name="silence", connect_options={"reconnect_time_wait": 0.2, "reconnected_cb": on_reconnect})
    return await worker.connect()


@pytest.mark.parametrize("connect", [as_a_service, as_a_worker], ids=["service", "worker"])
async def test_a_server_gone_silent_is_given_up_for_another_within_seconds(nats_url, connect):
    async with SilenceableProxy(nats_url) as proxy:
        reconnected = asyncio.Event()

        async def on_reconnect() -> None:
            reconnected.set()

        nc = await connect(proxy.url, on_reconnect)
        try:
            await nc.flush(timeout=2)
            proxy.go_silent()
            with pytest.raises(NatsTimeoutError):  # the link is dead, and nothing closed it
                await nc.flush(timeout=1)
            await asyncio.wait_for(reconnected.wait(), timeout=NOTICED_WITHIN_S)
            await nc.flush(timeout=2)  # and the new link works
        finally:
            await nc.close()
