"""The indexer's settings, read once from the environment."""

from pydantic import Field

from runtime.index_db import IndexSettings
from runtime.settings import ServiceSettings


class IndexerSettings(ServiceSettings, IndexSettings):
    port: int = Field(default=8004, ge=0, le=65535, alias="WF_INDEXER_PORT")  # /metrics and /healthz
