"""Settings every service reads from the environment, under the same names in the launcher, compose.yaml and
README."""

import re
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topology import Topology

URL_SAFE = re.compile(r"[A-Za-z0-9._~-]*")


class ServiceSettings(BaseSettings):
    # Errors name the variable and the rule, not the value: a value may be a password.
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True, hide_input_in_errors=True)

    nats_url: str = Field("nats://127.0.0.1:4222", validation_alias="NATS_URL")
    # The service's NATS user (deploy/nats/auth.conf); unset: NATS_URL says, or the server asks for none. The password
    # goes into the URLs, where nats-py reads it unescaped: hence only URL-safe characters (the generated ones are).
    nats_user: str = Field("", validation_alias="NATS_USER", pattern=r"^[A-Za-z0-9_.-]*$")
    nats_password: SecretStr = Field(SecretStr(""), validation_alias="NATS_PASSWORD")
    prefix: str = Field("wf", validation_alias="WF_PREFIX", pattern=r"^[a-z][a-z0-9_-]{0,15}$")
    bind_host: str = Field("0.0.0.0", validation_alias="WF_BIND_HOST")  # where a service's HTTP port listens
    # Servers that store each stream and bucket: 1 on a single server, 3 on a 3-node cluster (at most the cluster size).
    replicas: int = Field(1, ge=1, le=5, validation_alias="WF_REPLICAS")

    @model_validator(mode="after")
    def _usable_credentials(self) -> "ServiceSettings":
        password = self.nats_password.get_secret_value()
        if password and not self.nats_user:
            raise ValueError("NATS_PASSWORD is set but NATS_USER is not: set both, or neither")
        if not URL_SAFE.fullmatch(password):
            raise ValueError("NATS_PASSWORD may hold only letters, digits and . _ ~ - (it goes into the server URLs)")
        return self

    @property
    def topology(self) -> Topology:
        return Topology(self.prefix, self.replicas)

    @property
    def nats_servers(self) -> list[str]:
        """NATS_URL may list several servers, comma separated; clients fail over between them. Each carries NATS_USER
        and NATS_PASSWORD when set (nats-py takes a server's credentials from its URL only)."""
        urls = [url.strip() for url in self.nats_url.split(",") if url.strip()]
        if not self.nats_user:
            return urls
        return [with_credentials(url, self.nats_user, self.nats_password.get_secret_value()) for url in urls]

    def nats_connection(self, service: str) -> dict[str, Any]:
        """How `service` connects (nats-py's connect, FastStream's NatsBroker): to every server, with its replies on
        inboxes of its own."""
        return {"servers": self.nats_servers, "inbox_prefix": inbox_prefix(service)}


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
