"""TLS as compose runs it, without Docker: the local CA of services/launcher/tls.py, nats-server with its -tls config
(deploy/nats/tls.conf) and the users of auth.conf, the services connecting over tls:// trusting NATS_CA_FILE, and the
api and the broadcaster serving HTTPS and WSS (WF_TLS_CERT_FILE, WF_TLS_KEY_FILE). A workflow created over HTTPS is
applied by the orchestrator and its events reach a WSS client; plain text, and a client that does not trust the CA,
are refused."""

import asyncio
import json
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from websockets.asyncio.client import connect

from contracts.topology import Topology
from runtime.settings import ServiceSettings
from services.cli.main import main as cli
from services.launcher.nats_server import NatsServer, free_port
from services.launcher.nats_users import NatsUsers
from services.launcher.tls import SERVER_ADDRESSES, SERVER_NAMES, TlsFiles
from tests.conftest import PROJECT, TEST_TOKENS, bearer, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def tls(tmp_path) -> TlsFiles:
    return TlsFiles.load_or_create(tmp_path / "secrets" / "tls")


@pytest.fixture
def users() -> NatsUsers:
    return NatsUsers.generate()


@pytest.fixture
def tls_nats(tmp_path, tls, users) -> Iterator[NatsServer]:
    """nats-server as compose runs it: single-tls.conf, the users of auth.conf. Of this test only, so the names are
    the default prefix's, which auth.conf grants."""
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log", users=users, tls=tls).start()
    yield server
    server.stop()


async def test_the_services_run_over_tls_and_are_reached_over_https_and_wss_with_the_local_ca(
    tls_nats, tls, users, start_service, capsys
):
    topology = Topology(prefix="wf")
    trust = {"NATS_CA_FILE": str(tls.ca_cert)}
    https = {"WF_TLS_CERT_FILE": str(tls.cert), "WF_TLS_KEY_FILE": str(tls.key)}
    ports = {"WF_API_PORT": str(free_port()), "WF_BROADCASTER_PORT": str(free_port())}
    services = [
        start_service(name, tls_nats.url, topology, **trust, **users.service_environment(name), **extra)
        for name, extra in (("orchestrator", {}), ("api", https | ports), ("broadcaster", https | ports))
    ]
    api_url, ws_url = f"https://127.0.0.1:{ports['WF_API_PORT']}", f"wss://127.0.0.1:{ports['WF_BROADCASTER_PORT']}"
    ca = ssl.create_default_context(cafile=str(tls.ca_cert))

    async with httpx.AsyncClient(base_url=api_url, verify=ca, headers=bearer(), timeout=10) as api:

        async def ready() -> bool:
            for service in services:
                assert service.process.poll() is None, service.log_path.read_text()
            try:
                answers = [await api.get(f"{url}/healthz") for url in (api_url, ws_url.replace("wss", "https"))]
            except httpx.TransportError:
                return False
            return all(answer.status_code == 200 for answer in answers)

        await eventually(ready, timeout_s=30)
        broadcaster_url = (await api.get("/config")).json()["broadcaster_url"]
        async with connect(f"{ws_url}/ws?token={TEST_TOKENS['admin']}", ssl=ca, open_timeout=10) as socket:
            assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "heartbeat"
            created = await api.post("/workflows", json={"type": "approval"})
            first = json.loads(await asyncio.wait_for(socket.recv(), 10))
    # The command line: the API over HTTPS, then the WebSocket (wss://, from /config) trusting the same CA.
    wf = ["--url", api_url, "--token", TEST_TOKENS["admin"], "--ca", str(tls.ca_cert), "--json"]
    capsys.readouterr()
    watched = await asyncio.to_thread(cli, [*wf, "watch", "--since", "0", "--count", "1"])
    watched_line = capsys.readouterr().out
    untrusting = await asyncio.to_thread(cli, ["--url", api_url, "--token", TEST_TOKENS["admin"], "types"])
    untrusting_error = capsys.readouterr().err

    assert broadcaster_url == f"{ws_url}/ws"  # the page is told wss://, as it was reached over https://
    assert created.status_code == 201, created.text
    assert first["event"]["workflow_id"] == created.json()["workflow_id"]
    assert first["event"]["type"] == "WorkflowCreated"
    assert watched == 0 and json.loads(watched_line) == first
    assert untrusting == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusting_error


async def test_plain_text_and_clients_that_do_not_trust_the_ca_are_refused(tls_nats, tls, users, tmp_path):
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_nats.port)
    info = json.loads((await reader.readline()).removeprefix(b"INFO "))
    login = json.dumps({"user": "admin", "pass": users.passwords["admin"], "verbose": False})
    writer.write(f"CONNECT {login}\r\nPING\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 10)  # no PONG: the server hangs up
    writer.close()

    assert info["tls_required"] is True
    assert answer == b""
    assert "TLS handshake error" in (tmp_path / "nats.log").read_text()
    admin = {"user": "admin", "password": users.passwords["admin"], "allow_reconnect": False, "connect_timeout": 5}
    with pytest.raises(ssl.SSLCertVerificationError):
        await nats.connect(tls_nats.url, **admin)  # the system's authorities do not know the local CA
    client = await nats.connect(tls_nats.url, tls=ssl.create_default_context(cafile=str(tls.ca_cert)), **admin)
    await client.close()


async def test_https_is_refused_by_a_client_that_does_not_trust_the_ca(tls, start_service, nats_url, topology):
    port = free_port()
    https = {"WF_TLS_CERT_FILE": str(tls.cert), "WF_TLS_KEY_FILE": str(tls.key), "WF_API_PORT": str(port)}
    api = start_service("api", nats_url, topology, **https)
    ca = ssl.create_default_context(cafile=str(tls.ca_cert))

    async def listening() -> bool:
        assert api.process.poll() is None, api.log_path.read_text()
        try:
            async with httpx.AsyncClient(verify=ca) as client:
                await client.get(f"https://127.0.0.1:{port}/healthz")  # 503 until its streams exist: not needed
            return True
        except httpx.TransportError:
            return False

    await eventually(listening, timeout_s=30)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        async with httpx.AsyncClient() as client:
            await client.get(f"https://127.0.0.1:{port}/healthz")
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/healthz")  # plain HTTP to the HTTPS port


# the local CA


def test_the_local_ca_is_made_once_its_keys_readable_by_the_owner_only(tls):
    again = TlsFiles.load_or_create(tls.directory)
    certificate = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert again.cert.read_bytes() == tls.cert.read_bytes() and again.ca_cert.read_bytes() == tls.ca_cert.read_bytes()
    assert set(names.get_values_for_type(x509.DNSName)) == set(SERVER_NAMES)
    assert {"localhost", "nats", "nats-2", "nats-3", "api", "broadcaster"} <= set(SERVER_NAMES)
    assert {str(address) for address in names.get_values_for_type(x509.IPAddress)} == set(SERVER_ADDRESSES)
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(tls.ca_cert.read_bytes()))
    assert stat.S_IMODE(tls.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(tls.key.stat().st_mode) == stat.S_IMODE(tls.ca_key.stat().st_mode) == 0o600


def test_a_server_certificate_near_its_end_is_made_again_by_the_same_ca(tls):
    certificate = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    later = certificate.not_valid_after_utc - timedelta(days=10)

    renewed = TlsFiles.load_or_create(tls.directory, now=later)

    assert renewed.cert.read_bytes() != certificate.public_bytes(Encoding.PEM)
    assert x509.load_pem_x509_certificate(renewed.cert.read_bytes()).not_valid_after_utc > later + timedelta(days=300)
    assert TlsFiles.load_or_create(tls.directory, now=datetime.now(UTC)).cert.read_bytes() == renewed.cert.read_bytes()


def test_a_server_certificate_of_another_ca_is_made_again_by_this_one(tls, tmp_path):
    other = TlsFiles.load_or_create(tmp_path / "elsewhere")
    for name in ("cert", "key"):
        getattr(tls, name).write_bytes(getattr(other, name).read_bytes())

    remade = TlsFiles.load_or_create(tls.directory)

    certificate = x509.load_pem_x509_certificate(remade.cert.read_bytes())
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(tls.ca_cert.read_bytes()))


def test_the_command_line_refuses_a_ca_file_it_cannot_use(capsys):
    assert cli(["--ca", "/nowhere.pem", "types"]) == 1
    assert capsys.readouterr().err == "wf: --ca: cannot read /nowhere.pem: No such file or directory\n"


def test_the_command_makes_the_files_under_the_data_dir(tmp_path):
    command = [sys.executable, "-m", "services.launcher.tls"]
    result = subprocess.run(
        command,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"WF_DATA_DIR": str(tmp_path), "PATH": ""},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "secrets" / "tls")
    assert (tmp_path / "secrets" / "tls" / "ca.pem").is_file()


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"NATS_CA_FILE": "/nowhere.pem"}, "NATS_CA_FILE: cannot read /nowhere.pem"),
        ({"NATS_CA_FILE": "key"}, "NATS_CA_FILE: .* is not a certificate in PEM"),
        ({"WF_TLS_CERT_FILE": "cert"}, "WF_TLS_CERT_FILE and WF_TLS_KEY_FILE go together"),
        ({"WF_TLS_CERT_FILE": "cert", "WF_TLS_KEY_FILE": "ca_key"}, "are not a certificate \\(PEM\\) and its key"),
        ({"WF_TLS_CERT_FILE": "cert", "WF_TLS_KEY_FILE": "/nowhere.pem"}, "cannot read /nowhere.pem"),
    ],
)
def test_tls_settings_that_cannot_work_are_refused_with_the_reason(tls, variables, problem):
    files = {"key": tls.key, "cert": tls.cert, "ca_key": tls.ca_key}
    environment: dict[str, Any] = {name: str(files.get(value, value)) for name, value in variables.items()}  # as read

    with pytest.raises(ValueError, match=problem):
        ServiceSettings(**environment)
