"""Serving an app on a real port in the test's own event loop, for clients that need real sockets (a WebSocket that
pushes back, a CLI in another thread): uvicorn, as the services run it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn

from runtime.observability import SERVER_LIMITS
from tests.conftest import eventually


@asynccontextmanager
async def served(app, port: int = 0, ready: bool = True) -> AsyncIterator[str]:
    """Run the app on 127.0.0.1 (on `port`, or a free one); yields its `host:port` once it listens and, when `ready`,
    once its /healthz answers 200. Leaving stops it as SIGTERM would: its clients are closed."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **SERVER_LIMITS))
    serve = asyncio.create_task(server.serve())

    def started() -> bool:
        assert not serve.done(), "uvicorn stopped during start-up"
        return server.started

    await eventually(started, timeout_s=10)
    address = f"127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        if ready:

            async def healthy() -> bool:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"http://{address}/healthz")).status_code == 200

            await eventually(healthy, timeout_s=10)
        yield address
    finally:
        server.should_exit = True
        await serve
