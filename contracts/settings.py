"""Settings every service reads from the environment, under the same names in the launcher, compose.yaml and
README."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.topology import Topology


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    nats_url: str = Field("nats://127.0.0.1:4222", validation_alias="NATS_URL")
    prefix: str = Field("wf", validation_alias="WF_PREFIX", pattern=r"^[a-z][a-z0-9_-]{0,15}$")
    bind_host: str = Field("0.0.0.0", validation_alias="WF_BIND_HOST")  # where a service's HTTP port listens
    # Servers that store each stream and bucket: 1 on a single server, 3 on a 3-node cluster (at most the cluster size).
    replicas: int = Field(1, ge=1, le=5, validation_alias="WF_REPLICAS")

    @property
    def topology(self) -> Topology:
        return Topology(self.prefix, self.replicas)

    @property
    def nats_servers(self) -> list[str]:
        """NATS_URL may list several servers, comma separated; clients fail over between them."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]
