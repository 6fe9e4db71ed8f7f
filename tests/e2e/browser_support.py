"""What the browser tests stand on: the system running for real (through the launcher, or service by service so that
one can be killed), Debian's Chromium, the outputs a seeded run will produce, and screenshots kept as artifacts."""

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from contracts.ids import job_id
from runtime.randomness import Randomness
from services.launcher.nats_server import NatsServer, free_port
from tests.conftest import PROJECT, ServiceProcess, bearer, eventually, launcher_says_ready

CHROMIUM_PATH = Path("/usr/bin/chromium")  # Debian's; Playwright's own browser download cannot work here
# Without the networking switches Chromium keeps calling home, and this machine's closed network refuses it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEB_DIST = PROJECT / "web" / "dist"
ARTIFACTS = PROJECT / "test-artifacts"
READY_DEADLINE_S = 90.0  # past the launcher's own 60 s, so that its verdict is what a failure shows


def require(condition: object, why: str) -> None:
    """Skip a browser test that cannot run here; in CI (env CI set) fail instead, so that it never passes by skipping."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run: {why}")
    pytest.skip(why)


def output_of_visit(seed: int, workflow_id: str, visit: int) -> float:
    """The output the processor gives the first try of the step run in the workflow's `visit`-th state: a seeded
    processor draws its output from the job's id."""
    return Randomness(seed).draw("output", job_id(workflow_id, visit, 1))


class Screenshots:
    """Numbered screenshots of one test, in test-artifacts/<test name>/ (emptied when the test starts)."""

    def __init__(self, test_name: str) -> None:
        self.directory = ARTIFACTS / re.sub(r"[^\w.-]+", "_", test_name)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.taken = 0

    async def take(self, page, name: str) -> Path:
        self.taken += 1
        path = self.directory / f"{self.taken:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


@dataclass
class System:
    api: str
    broadcaster: str
    services: dict[str, ServiceProcess] = field(default_factory=dict)  # when started one by one

    async def healthy(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                answers = [await client.get(f"{base}/healthz") for base in (self.api, self.broadcaster)]
        except httpx.HTTPError:
            return False
        return all(answer.status_code == 200 for answer in answers)

    async def until_state(self, workflow_id: str, business_state: str, attempt: int) -> dict:
        async def reached():
            async with httpx.AsyncClient(base_url=self.api, headers=bearer()) as client:
                view = (await client.get(f"/workflows/{workflow_id}")).json()
            return view if (view.get("business_state"), view.get("attempt")) == (business_state, attempt) else None

        return await eventually(reached)


LINK_SECRET = "browser-test-link-secret"


def system_environment(tmp_path: Path, seed: int, tokens_file: Path, **extra: str) -> tuple[dict[str, str], int, int]:
    api_port = free_port()
    broadcaster_port = free_port()
    while broadcaster_port == api_port:
        broadcaster_port = free_port()
    require((WEB_DIST / "index.html").exists(), "the web UI is not built (bash scripts/bootstrap.sh builds web/dist)")
    env = (
        {name: value for name, value in os.environ.items() if name != "NATS_URL"}
        | {
            "WF_DATA_DIR": str(tmp_path / "data"),
            "WF_API_PORT": str(api_port),
            "WF_ORCHESTRATOR_PORT": "0",
            "WF_PROCESSOR_PORT": "0",
            "WF_BROADCASTER_PORT": str(broadcaster_port),
            "WF_BIND_HOST": "127.0.0.1",
            "WF_SEED": str(seed),
            "WF_SEND_FAILURE_RATE": "0",
            "WF_WEB_DIR": str(WEB_DIST),
            "WF_API_TOKENS_FILE": str(tokens_file),  # the test tokens (tests/conftest.py)
            "WF_LINK_SECRET": LINK_SECRET,  # so a test can sign a notification's decision link
        }
        | extra
    )
    return env, api_port, broadcaster_port


async def wait_until_healthy(system: System, alive, logs: list[Path], launched: bool = False) -> None:
    """Until the API and the broadcaster answer (`launched`: and the launcher says every service does)."""

    async def ready() -> bool:
        if not alive():
            output = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs if log.exists())
            raise AssertionError(f"the system stopped while starting:\n{output}")
        return (not launched or launcher_says_ready(logs[0])) and await system.healthy()

    await eventually(ready, timeout_s=READY_DEADLINE_S)


@asynccontextmanager
async def launched_system(tmp_path: Path, seed: int, tokens_file: Path, **extra: str) -> AsyncIterator[System]:
    """The system as `make run` starts it: the launcher, its own nats-server and the services (`extra`: more of
    their settings)."""
    env, api_port, broadcaster_port = system_environment(tmp_path, seed, tokens_file, **extra)
    system = System(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{broadcaster_port}")
    log = tmp_path / "launcher.log"
    with log.open("wb") as output:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "services.launcher"], env=env, cwd=PROJECT, stdout=output, stderr=output
        )
    try:
        await wait_until_healthy(system, lambda: launcher.poll() is None, [log], launched=True)
        yield system
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=30)


@asynccontextmanager
async def separately_started_system(tmp_path: Path, seed: int, tokens_file: Path) -> AsyncIterator[System]:
    """A nats-server and each service as a process of its own, so that one can be killed and started again."""
    env, api_port, broadcaster_port = system_environment(tmp_path, seed, tokens_file)
    server = NatsServer(tmp_path / "nats").start()
    env["NATS_URL"] = server.url
    system = System(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{broadcaster_port}")
    try:
        for name in ("orchestrator", "processor", "api", "broadcaster"):
            system.services[name] = ServiceProcess(name, env, tmp_path).start()
        services = system.services.values()
        await wait_until_healthy(
            system,
            lambda: all(s.process is not None and s.process.poll() is None for s in services),
            [s.log_path for s in services],
        )
        yield system
    finally:
        for service in system.services.values():
            service.stop()
        server.stop()
