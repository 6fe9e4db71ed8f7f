"""The NATS users' passwords: generated once into a file only its owner reads, kept across runs, and handed to each
service as its own user; outside clients are told to connect as `client`."""

import stat

import pytest

from runtime.settings import ServiceSettings
from services.launcher.__main__ import nats_for_clients
from services.launcher.nats_server import NatsCluster
from services.launcher.nats_users import USERS, NatsUsers, password_variable, secrets_file
from services.launcher.settings import LauncherSettings


def test_passwords_are_generated_once_into_a_file_only_its_owner_reads(tmp_path):
    path = secrets_file(tmp_path)
    first = NatsUsers.load_or_create(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert set(first.passwords) == set(USERS) and len(set(first.passwords.values())) == len(USERS)
    assert NatsUsers.load_or_create(path) == first


def test_a_password_missing_from_the_file_is_added_and_the_others_kept(tmp_path):
    path = secrets_file(tmp_path)
    kept = NatsUsers.load_or_create(path)
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if "CLIENT" not in line))

    again = NatsUsers.load_or_create(path)

    assert {user: again.passwords[user] for user in USERS if user != "client"} == {
        user: kept.passwords[user] for user in USERS if user != "client"
    }
    assert password_variable("client") in path.read_text() and again.passwords["client"] != kept.passwords["client"]


def test_the_file_also_keeps_composes_secrets_and_adds_one_to_a_file_made_before_it(tmp_path):
    path = secrets_file(tmp_path)
    first = NatsUsers.load_or_create(path)
    assert set(first.compose_passwords) == {"WF_POSTGRES_PASSWORD", "WF_LINK_SECRET"}
    assert NatsUsers.load_or_create(path) == first
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if "POSTGRES" not in line))

    again = NatsUsers.load_or_create(path)

    assert again.passwords == first.passwords and again.compose_passwords["WF_POSTGRES_PASSWORD"]
    assert f"WF_POSTGRES_PASSWORD={again.compose_passwords['WF_POSTGRES_PASSWORD']}\n" in path.read_text()


def test_a_service_connects_to_every_server_as_its_own_user(monkeypatch):
    users = NatsUsers.generate()
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222,nats://127.0.0.1:4223")
    for name, value in users.service_environment("processor").items():
        monkeypatch.setenv(name, value)

    connection = ServiceSettings().nats_connection("processor")
    assert connection["servers"] == ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]
    assert (connection["user"], connection["password"]) == ("processor", users.passwords["processor"])
    assert connection["inbox_prefix"] == "_INBOX_processor"


def test_a_password_without_its_user_is_refused_without_showing_it(monkeypatch):
    monkeypatch.setenv("NATS_PASSWORD", "secret")

    with pytest.raises(ValueError, match="NATS_PASSWORD") as refused:
        ServiceSettings()
    assert "secret" not in str(refused.value)


def test_outside_clients_are_told_to_connect_as_the_client_user(tmp_path, monkeypatch):
    monkeypatch.setenv("WF_DATA_DIR", str(tmp_path))
    users = NatsUsers.generate()
    cluster = NatsCluster(tmp_path / "cluster", users=users)

    shown = nats_for_clients(LauncherSettings(), cluster, cluster.url)

    password = users.passwords["client"]
    assert shown.startswith(",".join(url.replace("://", f"://client:{password}@") for url in cluster.urls))
    assert str(secrets_file(tmp_path)) in shown
