"""API tokens that expire and are revoked without a restart, against the api and the broadcaster as they run
(`python -m services.<name>`): an expired token is refused with when it expired (401, 4401); a token removed from the
tokens file while they run is refused within a couple of seconds, on the HTTP API, for a new WebSocket and for one
already open, while the other tokens go on working; a file that cannot be used is not taken; and the command that
manages the file (`python -m services.launcher.api_tokens issue|revoke|list`) is what the services see."""

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from contracts.auth import Role, TokenHolder
from runtime.tokens import Tokens
from services.launcher.nats_server import free_port
from tests.conftest import PROJECT, ServiceProcess, eventually

pytestmark = pytest.mark.integration

REVOKED_WITHIN_S = 3.0  # the services look at the file once a second; a request or a close takes the rest
EVERYONE = frozenset(Role)


@dataclass
class Running:
    """The api and the broadcaster, reading the tokens file `tokens_file` (which the test changes)."""

    tokens_file: Path
    api_url: str
    ws_url: str
    api: ServiceProcess
    broadcaster: ServiceProcess

    async def me(self, token: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=10) as client:
            return await client.get("/me", headers={"Authorization": f"Bearer {token}"})

    def connect(self, token: str):
        return connect(f"{self.ws_url}/ws?token={token}", open_timeout=10)

    def add(self, token: str, holder: TokenHolder) -> None:
        tokens = Tokens.from_file(self.tokens_file).by_digest | Tokens.issued({token: holder}).by_digest
        Tokens(tokens).write(self.tokens_file)


def manage_tokens(tokens_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.launcher.api_tokens --file FILE ...`, as an operator runs it."""
    command = [sys.executable, "-m", "services.launcher.api_tokens", "--file", str(tokens_file), *args]
    return subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
async def running(nats_url, topology, js, start_service, tmp_path) -> Running:
    """ann (every role), bob (approver) and cy, whose token has expired; the api and the broadcaster up (their
    streams exist: `js`)."""
    tokens_file = tmp_path / "api-tokens.json"
    Tokens.issued(
        {
            "token-of-ann": TokenHolder(name="ann", roles=EVERYONE),
            "token-of-bob": TokenHolder(name="bob", roles=frozenset({Role.APPROVER})),
            "token-of-cy": TokenHolder(name="cy", roles=EVERYONE, expires_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        }
    ).write(tokens_file)
    ports = {"WF_API_PORT": str(free_port()), "WF_BROADCASTER_PORT": str(free_port())}
    env = {"WF_API_TOKENS_FILE": str(tokens_file), "WF_BROADCASTER_HEARTBEAT_S": "0.3", **ports}
    api = start_service("api", nats_url, topology, **env)
    broadcaster = start_service("broadcaster", nats_url, topology, **env)
    api_url = f"http://127.0.0.1:{ports['WF_API_PORT']}"
    broadcaster_url = f"http://127.0.0.1:{ports['WF_BROADCASTER_PORT']}"

    async def both_ready() -> bool:
        for service in (api, broadcaster):
            assert service.process.poll() is None, service.log_path.read_text()
        async with httpx.AsyncClient(timeout=2) as client:
            try:
                answers = [await client.get(f"{url}/healthz") for url in (api_url, broadcaster_url)]
            except httpx.TransportError:
                return False
        return all(answer.status_code == 200 for answer in answers)

    await eventually(both_ready, timeout_s=30)
    return Running(tokens_file, api_url, broadcaster_url.replace("http", "ws"), api, broadcaster)


async def close_of(socket: ClientConnection) -> tuple[int, str]:
    """Read (heartbeats) until the server closes the connection; its code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(socket.recv(), 10)
    close = closed.value.rcvd
    assert close is not None, "closed without a close frame"
    return close.code, close.reason


async def refused_at_once(running: Running, token: str) -> tuple[int, str]:
    async with running.connect(token) as socket:
        return await close_of(socket)


async def let_in_by_both(running: Running, token: str) -> None:
    """Until the api and the broadcaster (each looks at the file on its own) both take a token just added."""

    async def let_in() -> bool:
        if (await running.me(token)).status_code != 200:
            return False
        async with running.connect(token) as socket:
            try:
                return json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "heartbeat"
            except ConnectionClosed:
                return False

    await eventually(let_in, timeout_s=REVOKED_WITHIN_S + 2)  # a busy machine: more time to see it, none to refuse


# expiry


async def test_an_expired_token_answers_401_saying_when_it_expired(running):
    answer = await running.me("token-of-cy")

    assert answer.json() == {
        "title": "Unauthorized",
        "status": 401,
        "detail": "the token expired at 2026-01-02T03:04:05+00:00",
        "code": "unauthorized",
    }
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await running.me("token-of-ann")).status_code == 200
    assert await refused_at_once(running, "token-of-cy") == (4401, "the token expired at 2026-01-02T03:04:05+00:00")


async def test_a_token_is_let_in_until_it_expires_then_refused_on_http_and_its_open_websocket_closed(running):
    expires_at = (datetime.now(UTC) + timedelta(seconds=9)).replace(microsecond=0)  # after it is let in (below)
    running.add("token-of-dee", TokenHolder(name="dee", roles=frozenset({Role.REQUESTER}), expires_at=expires_at))

    await let_in_by_both(running, "token-of-dee")
    async with running.connect("token-of-dee") as socket:
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "heartbeat"
        code, reason = await close_of(socket)
        closed_at = datetime.now(UTC)

    assert (code, reason) == (4401, f"the token expired at {expires_at.isoformat()}")
    assert expires_at <= closed_at < expires_at + timedelta(seconds=REVOKED_WITHIN_S)
    assert (await running.me("token-of-dee")).json()["detail"] == f"the token expired at {expires_at.isoformat()}"


# revocation, without a restart


async def test_a_token_revoked_while_the_services_run_is_refused_within_seconds_and_the_others_still_work(running):
    assert (await running.me("token-of-bob")).status_code == 200
    async with running.connect("token-of-bob") as bobs, running.connect("token-of-ann") as anns:
        await asyncio.wait_for(bobs.recv(), 5)
        await asyncio.wait_for(anns.recv(), 5)

        revoked = manage_tokens(running.tokens_file, "revoke", "bob")
        revoked_at = time.monotonic()
        assert revoked.returncode == 0, revoked.stderr

        async def refused() -> bool:
            return (await running.me("token-of-bob")).status_code == 401

        await eventually(refused, timeout_s=REVOKED_WITHIN_S)
        refused_after = time.monotonic() - revoked_at
        assert await close_of(bobs) == (4401, "the token is not valid")
        closed_after = time.monotonic() - revoked_at
        heartbeat = json.loads(await asyncio.wait_for(anns.recv(), 5))  # ann's connection goes on

    assert refused_after < REVOKED_WITHIN_S and closed_after < REVOKED_WITHIN_S
    assert heartbeat["type"] == "heartbeat"
    assert (await running.me("token-of-bob")).json()["detail"] == "the token is not valid"
    assert (await running.me("token-of-ann")).json()["name"] == "ann"
    assert await refused_at_once(running, "token-of-bob") == (4401, "the token is not valid")
    assert running.api.process.poll() is None and running.broadcaster.process.poll() is None  # never restarted


async def test_a_changed_file_that_cannot_be_used_is_not_taken_and_is_logged(running):
    running.tokens_file.write_text('{"sha256:not-a-digest": {"name": "eve", "roles": ["operator"]}}')

    def logged(service: ServiceProcess) -> bool:
        return "API tokens NOT reloaded, still accepting the 3 read before" in service.log_path.read_text()

    async def api_logged() -> bool:
        await running.me("token-of-ann")  # the api looks at the file when asked (the broadcaster every second)
        return logged(running.api)

    await eventually(api_logged, timeout_s=REVOKED_WITHIN_S, interval_s=0.2)
    await eventually(lambda: logged(running.broadcaster), timeout_s=REVOKED_WITHIN_S, interval_s=0.2)

    assert (await running.me("token-of-ann")).status_code == 200
    assert (await running.me("token-of-bob")).status_code == 200
    async with running.connect("token-of-bob") as socket:
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "heartbeat"
    assert "not-a-digest" not in (await running.me("token-of-ann")).text


# the command that manages the file


async def test_a_token_issued_by_the_command_is_let_in_and_listed_without_its_secret(running):
    issued = manage_tokens(
        running.tokens_file,
        "issue",
        "fay",
        "--roles",
        "approver,operator",
        "--expires-in",
        "1d",
        "--groups",
        "managers",
    )
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()

    await let_in_by_both(running, token)
    me = (await running.me(token)).json()
    listed = manage_tokens(running.tokens_file, "list")

    assert me == {"name": "fay", "roles": ["approver", "operator"], "groups": ["managers"], "authenticated": True}
    assert "shown only now" in issued.stderr and token not in issued.stderr
    assert listed.returncode == 0 and token not in listed.stdout
    fay = next(line.split() for line in listed.stdout.splitlines() if " fay " in line)
    expiry = datetime.fromisoformat(fay[3])
    assert fay[2] == "approver,operator"
    assert timedelta(hours=23) < expiry - datetime.now(UTC) <= timedelta(days=1)
    assert token not in running.tokens_file.read_text()

    assert manage_tokens(running.tokens_file, "revoke", fay[0].rstrip("…")).returncode == 0

    async def refused() -> bool:
        return (await running.me(token)).status_code == 401

    await eventually(refused, timeout_s=REVOKED_WITHIN_S)
