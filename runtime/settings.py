"""Settings every service reads from the environment, under the same names in the launcher, compose.yaml and
README."""

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topology import Topology

if TYPE_CHECKING:
    from wfworker import Worker

# A server that vanishes without closing the connection (a power cut, a partition, a killed container whose goodbye
# never arrives) answers no ping: the client gives it up after about 20 s and fails over, where nats-py's defaults
# (a ping every 2 min, two unanswered) would leave it waiting on the dead link for up to 6 minutes.
LIVENESS = {"ping_interval": 5, "max_outstanding_pings": 3}


class ServiceSettings(BaseSettings):
    # Errors name the variable and the rule, not the value: a value may be a password.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True, hide_input_in_errors=True)
    # Every service's fields say `default=` and `alias=` (the variable): the forms type checkers read, so that
    # `ServiceSettings(NATS_URL=...)` checks (a positional default or a validation_alias they do not see).

    nats_url: str = Field(default="nats://127.0.0.1:4222", alias="NATS_URL")
    # The service's NATS user (deploy/nats/auth.conf); unset: NATS_URL says, or the server asks for none.
    nats_user: str = Field(default="", alias="NATS_USER", pattern=r"^[A-Za-z0-9_.-]*$")
    nats_password: SecretStr = Field(default=SecretStr(""), alias="NATS_PASSWORD")
    prefix: str = Field(default="wf", alias="WF_PREFIX", pattern=r"^[a-z][a-z0-9_-]{0,15}$")
    bind_host: str = Field(default="0.0.0.0", alias="WF_BIND_HOST")  # where a service's HTTP port listens
    # Servers that store each stream and bucket: 1 on a single server, 3 on a 3-node cluster (at most the cluster size).
    replicas: int = Field(default=1, ge=1, le=5, alias="WF_REPLICAS")
    # The authority that signed the NATS servers' certificates (compose's local CA). Unset: the system's authorities,
    # for a server that asks for TLS or a tls:// URL.
    nats_ca_file: Path | None = Field(default=None, alias="NATS_CA_FILE")
    # The HTTP port serves HTTPS with this certificate and its key (the api and the broadcaster: compose sets them).
    tls_cert_file: Path | None = Field(default=None, alias="WF_TLS_CERT_FILE")
    tls_key_file: Path | None = Field(default=None, alias="WF_TLS_KEY_FILE")

    @field_validator("nats_ca_file", "tls_cert_file", "tls_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None  # VARIABLE= names no file (not the current directory)

    @model_validator(mode="after")
    def _usable_credentials(self) -> "ServiceSettings":
        password = self.nats_password.get_secret_value()
        if password and not self.nats_user:
            raise ValueError("NATS_PASSWORD is set but NATS_USER is not: set both, or neither")
        if self.nats_ca_file:
            trusting(self.nats_ca_file, "NATS_CA_FILE")  # a file that is not an authority's certificate: said now
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("WF_TLS_CERT_FILE and WF_TLS_KEY_FILE go together: set both (HTTPS), or neither (HTTP)")
        if self.tls_cert_file and self.tls_key_file:
            for variable, path in (("WF_TLS_CERT_FILE", self.tls_cert_file), ("WF_TLS_KEY_FILE", self.tls_key_file)):
                try:
                    path.read_bytes()
                except OSError as error:
                    raise ValueError(f"{variable}: cannot read {path}: {error.strerror or error}") from None
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                    self.tls_cert_file, self.tls_key_file
                )
            except ssl.SSLError as error:
                raise ValueError(
                    f"WF_TLS_CERT_FILE {self.tls_cert_file} and WF_TLS_KEY_FILE {self.tls_key_file} are "
                    f"not a certificate (PEM) and its key: {error.reason or error}"
                ) from None
        return self

    @property
    def topology(self) -> Topology:
        return Topology(self.prefix, self.replicas)

    @property
    def nats_servers(self) -> list[str]:
        """NATS_URL may list several servers, comma separated; clients fail over between them."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @property
    def nats_credentials(self) -> dict[str, str]:
        """NATS_USER and NATS_PASSWORD as nats-py's options, not in the URLs: so they are sent to every server, those
        a client only learns of from the cluster too. (A learnt server refused a client whose password was in the
        URLs only, and FastStream gives up reconnecting on that refusal: the orchestrator stayed cut off for good.)"""
        if not self.nats_user:
            return {}
        return {"user": self.nats_user, "password": self.nats_password.get_secret_value()}

    @property
    def nats_tls(self) -> ssl.SSLContext | None:
        """TLS to the NATS servers, trusting NATS_CA_FILE; None: nats-py's own choice (TLS when a server asks)."""
        return trusting(self.nats_ca_file, "NATS_CA_FILE") if self.nats_ca_file else None

    def nats_connection(self, service: str) -> dict[str, Any]:
        """How `service` connects with nats-py: to every server, over TLS with NATS_CA_FILE when set, with its
        replies on inboxes of its own, giving up a silent server within seconds (LIVENESS)."""
        connection = {"servers": self.nats_servers, "inbox_prefix": inbox_prefix(service), **LIVENESS}
        connection |= self.nats_credentials
        return connection | ({"tls": self.nats_tls} if self.nats_ca_file else {})

    def broker_connection(self, service: str) -> dict[str, Any]:
        """The same for FastStream's NatsBroker, which takes the user and TLS as its `security`."""
        # The api and the broadcaster have no broker: not imported there.
        from faststream.nats.security import NatsSecurity, NatsUserPassword

        connection = self.nats_connection(service)
        tls, user, password = (
            connection.pop("tls", None),
            connection.pop("user", None),
            connection.pop("password", None),
        )
        if user:
            return connection | {"security": NatsUserPassword(user, password, ssl_context=tls)}
        return connection | ({"security": NatsSecurity(ssl_context=tls)} if tls else {})

    def worker(self, name: str, nats_user: str, concurrency: int, port: int) -> "Worker":
        """A worker of the worker library (worker/) that takes jobs under the consumer `name`, connected as
        `nats_user` (its inboxes, and TLS as NATS_CA_FILE says), serving /metrics and /healthz on `port`."""
        from wfworker import Worker  # only the workers need the library

        connection = self.nats_connection(nats_user)
        servers = connection.pop("servers")
        credentials = (connection.pop("user"), connection.pop("password")) if "user" in connection else None
        return Worker(servers, credentials, name=name, prefix=self.prefix, concurrency=concurrency, port=port,
                      host=self.bind_host, connect_options=connection)  # fmt: skip

    @property
    def https(self) -> "HttpsFiles":
        """uvicorn's options for HTTPS, when WF_TLS_CERT_FILE and WF_TLS_KEY_FILE are set (else plain HTTP)."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return {}
        return {"ssl_certfile": str(self.tls_cert_file), "ssl_keyfile": str(self.tls_key_file)}


class LinkSettings(BaseSettings):
    """The key that signs one-click decision links (contracts/links.py): the notifier signs, the API checks."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True, hide_input_in_errors=True)

    link_secret: SecretStr = Field(default=SecretStr(""), alias="WF_LINK_SECRET")

    @property
    def link_key(self) -> bytes | None:
        """None when unset: no links are issued, and the API takes none."""
        return self.link_secret.get_secret_value().encode() or None


class HttpsFiles(TypedDict, total=False):
    """uvicorn's options for HTTPS: none, or both."""

    ssl_certfile: str
    ssl_keyfile: str


def trusting(ca_file: Path | str, variable: str) -> ssl.SSLContext:
    """A client's TLS that trusts the authority of `ca_file` (PEM) alone, and checks each server's name against its
    certificate. ValueError naming `variable` when the file is not usable."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError as error:  # (an OSError too: first)
        raise ValueError(f"{variable}: {ca_file} is not a certificate in PEM: {error.reason or error}") from None
    except OSError as error:
        raise ValueError(f"{variable}: cannot read {ca_file}: {error.strerror or error}") from None


def with_credentials(url: str, user: str, password: str) -> str:
    """The server URL with a user and password in it, unless it names a user of its own."""
    scheme, separator, address = url.partition("://")
    if not separator:
        scheme, address = "nats", url
    return url if "@" in address else f"{scheme}://{user}:{password}@{address}"


def inbox_prefix(service: str) -> str:
    """Where a service's replies come: `_INBOX_<service>.…`, which deploy/nats/auth.conf lets only its user subscribe
    to. On the shared default `_INBOX.…`, any user could read the replies meant for another (a read of the log)."""
    return f"_INBOX_{service}"


def pull_inbox_prefix(service: str) -> bytes:
    """The same, as a pull subscription takes it (FastStream passes `_INBOX.` unless told)."""
    return f"{inbox_prefix(service)}.".encode()
