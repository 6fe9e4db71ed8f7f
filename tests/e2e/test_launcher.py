"""`make run` as a user runs it: the launcher brings up an embedded nats-server and every service, and Ctrl-C takes
them all down again."""

import os
import re
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from runtime.tokens import Tokens
from services.launcher.nats_server import free_port
from tests.conftest import launcher_says_ready

pytestmark = pytest.mark.e2e

READY_DEADLINE_S = 90.0  # past the launcher's own 60 s, so that its verdict is what a failure shows
STOP_DEADLINE_S = 20.0


def answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_healthy(urls: list[str], launcher: subprocess.Popen, output: Path) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while not (launcher_says_ready(output) and all(answers_ok(url) for url in urls)):
        assert launcher.poll() is None, f"launcher exited with {launcher.returncode}:\n{output.read_text()}"
        assert time.monotonic() < deadline, f"not healthy within {READY_DEADLINE_S:.0f} s:\n{output.read_text()}"
        time.sleep(0.1)  # a poll interval, not a wait for something to happen


def run_launcher_until_ready_then_ctrl_c(tmp_path: Path, *arguments: str) -> str:
    """Launch as a user would, wait until the API and the broadcaster answer, press Ctrl-C; the launcher's output."""
    api_port = free_port()
    broadcaster_port = free_port()
    while broadcaster_port == api_port:
        broadcaster_port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "NATS_URL"} | {
        "WF_API_PORT": str(api_port),
        "WF_ORCHESTRATOR_PORT": "0",
        "WF_PROCESSOR_PORT": "0",
        "WF_BROADCASTER_PORT": str(broadcaster_port),
        "WF_DATA_DIR": str(tmp_path / "data"),
    }
    output = tmp_path / "launcher.out"
    with output.open("wb") as sink:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "services.launcher", *arguments],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        health_urls = [f"http://127.0.0.1:{port}/healthz" for port in (api_port, broadcaster_port)]
        wait_until_healthy(health_urls, launcher, output)
        assert all(answers_ok(url) for url in health_urls)

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=STOP_DEADLINE_S) == 0, output.read_text()
    finally:
        if launcher.poll() is None:  # a failed assertion: still let the launcher stop what it started
            launcher.terminate()
            try:
                launcher.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
    return output.read_text()


def assert_nats_ran_with_its_users(data: Path, nats_logs: list[Path]) -> None:
    """The passwords were generated into a file only its owner reads, and every service was allowed all it did
    (nats-server logs a refusal as "... Violation - Subject ...")."""
    assert stat.S_IMODE((data / "secrets" / "nats.env").stat().st_mode) == 0o600
    refused = [line for path in nats_logs for line in path.read_text().splitlines() if " Violation - " in line]
    assert refused == []


def test_launcher_starts_the_system_and_stops_every_process_on_ctrl_c(tmp_path: Path) -> None:
    log = run_launcher_until_ready_then_ctrl_c(tmp_path)
    started = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", log)]
    assert len(started) == 9, f"expected nats-server, seven services and the payment sandbox:\n{log}"
    assert "started payments (pid" in log and "started payments-sandbox (pid" in log
    assert [pid for pid in started if is_running(pid)] == [], log
    assert (tmp_path / "data" / "nats").is_dir()
    assert_nats_ran_with_its_users(tmp_path / "data", [tmp_path / "data" / "nats.log"])


def test_launcher_runs_a_cluster_of_three_and_two_replicas_of_the_workers(tmp_path: Path) -> None:
    log = run_launcher_until_ready_then_ctrl_c(tmp_path, "--cluster", "--replicas", "2")
    started = dict(re.findall(r"started (nats-server n\d|[a-z]+(?:-\d|-sandbox)?) \(pid (\d+)\)", log))
    expected = {"nats-server n1", "nats-server n2", "nats-server n3", "api", "broadcaster", "indexer", "notifier"}
    expected |= {"payments", "payments-sandbox"}
    expected |= {f"{service}-{replica}" for service in ("orchestrator", "processor") for replica in (1, 2)}
    assert set(started) == expected, log
    assert [pid for pid in map(int, started.values()) if is_running(pid)] == [], log
    assert all((tmp_path / "data" / "cluster" / node).is_dir() for node in ("n1", "n2", "n3"))
    assert_nats_ran_with_its_users(tmp_path / "data", list((tmp_path / "data" / "cluster").glob("n?.log")))


def test_the_first_run_makes_api_tokens_shows_them_once_and_keeps_only_their_digests(tmp_path: Path) -> None:
    first = run_launcher_until_ready_then_ctrl_c(tmp_path)
    again = run_launcher_until_ready_then_ctrl_c(tmp_path)

    tokens_file = tmp_path / "data" / "secrets" / "api-tokens.json"
    sign_in = re.search(r"sign in +http://127\.0\.0\.1:\d+/#token=(\S+)", first)
    assert sign_in, first
    dev_token = sign_in.group(1)
    assert f"export WF_TOKEN={dev_token}" in first
    dev = Tokens.from_file(tokens_file).holder(dev_token)
    assert dev is not None and dev.name == "dev"
    assert dev_token not in tokens_file.read_text()
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    assert dev_token not in again and f"the ones shown when {tokens_file} was made" in again
