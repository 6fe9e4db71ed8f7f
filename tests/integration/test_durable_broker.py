"""Every nats-server the project starts syncs each write to disk before acknowledging it (deploy/nats/jetstream.conf),
unless the unsafe setting says otherwise on purpose. Read back from the running server's own report (/varz)."""

import json
import os
import subprocess
import urllib.request

import pytest

from services.launcher.nats_server import NatsServer, nats_server_binary
from services.launcher.nats_users import NatsUsers
from tests.conftest import PROJECT

CONFIGS = PROJECT / "deploy" / "nats"

pytestmark = pytest.mark.integration


def jetstream_config(server: NatsServer) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.monitor_port}/varz", timeout=5) as response:
        return json.load(response)["jetstream"]["config"]


@pytest.mark.parametrize("users", [None, NatsUsers.generate()], ids=["open.conf", "single.conf"])
def test_a_server_syncs_every_write_by_default(tmp_path, users) -> None:
    server = NatsServer(tmp_path / "nats", users=users).start()
    try:
        assert jetstream_config(server).get("sync_always") is True
    finally:
        server.stop()


def test_the_unsafe_interval_is_what_the_server_runs(tmp_path) -> None:
    server = NatsServer(tmp_path / "nats", sync_interval="120s").start()
    try:
        config = jetstream_config(server)
        assert not config.get("sync_always")
        assert config["sync_interval"] == 120 * 10**9  # nanoseconds
    finally:
        server.stop()


@pytest.mark.parametrize("interval", ["2m", "", "never", "0s"])
def test_an_interval_nats_server_would_misread_is_refused(tmp_path, interval) -> None:
    with pytest.raises(ValueError, match="always"):
        NatsServer(tmp_path / "nats", sync_interval=interval)


def test_no_shipped_config_can_run_jetstream_at_the_servers_own_two_minutes():
    """jetstream.conf alone says how JetStream syncs, every config that runs JetStream takes it, and a server given no
    NATS_SYNC_INTERVAL refuses to start rather than fall back to nats-server's default (a sync every 2 minutes)."""
    setting = {path.name for path in CONFIGS.glob("*.conf") if "sync_interval" in path.read_text()}
    assert setting == {"jetstream.conf"}
    blocks = {path.name for path in CONFIGS.glob("*.conf") if "jetstream {" in path.read_text()}
    assert blocks == {"jetstream.conf"}
    taking = {path.name for path in CONFIGS.glob("*.conf") if "include ./jetstream.conf" in path.read_text()}
    assert taking == {"open.conf", "single.conf", "cluster-node.conf"}  # the others include one of these
    environment = {
        **os.environ,
        "NATS_SERVER_NAME": "n",
        "NATS_LISTEN": "127.0.0.1:4222",
        "NATS_HTTP": "127.0.0.1:8222",
    }
    environment |= {"NATS_STORE_DIR": "/nonexistent"}
    environment.pop("NATS_SYNC_INTERVAL", None)
    checked = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(CONFIGS / "open.conf")],
        env=environment, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode != 0
    assert "NATS_SYNC_INTERVAL" in checked.stderr + checked.stdout
