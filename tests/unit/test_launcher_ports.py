"""The launcher's own NATS never takes a port its services are told to listen on: those are not bound yet when it
picks, so a port that is free then may still be one of them (CI saw the api fail on "address already in use")."""

import itertools

from services.launcher import __main__ as launcher
from services.launcher import nats_server
from services.launcher.settings import LauncherSettings


def test_the_launchers_nats_skips_the_ports_its_services_are_given(tmp_path, monkeypatch):
    settings = LauncherSettings.model_validate(
        {"WF_DATA_DIR": str(tmp_path), "WF_API_PORT": 31588, "WF_BROADCASTER_PORT": 31589, "NATS_URL": ""}
    )
    picks = itertools.chain([31588, 31589, 31588], itertools.count(40000))  # what a free-port pick may come up with

    def pick(preferred=None) -> int:
        return next(picks)

    monkeypatch.setattr(nats_server, "free_port", pick)
    monkeypatch.setattr(launcher, "free_port", pick)

    nats = launcher.own_nats(settings, cluster=False)

    assert isinstance(nats, nats_server.NatsServer)
    assert {nats.port, nats.monitor_port}.isdisjoint({31588, 31589}) and nats.port != nats.monitor_port
