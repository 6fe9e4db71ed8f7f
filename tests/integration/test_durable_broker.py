"""Every nats-server the project starts syncs each write to disk before acknowledging it (deploy/nats/jetstream.conf),
unless the unsafe setting says otherwise on purpose. Read back from the running server's own report (/varz)."""

import json
import urllib.request

import pytest

from services.launcher.nats_server import NatsServer
from services.launcher.nats_users import NatsUsers

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
