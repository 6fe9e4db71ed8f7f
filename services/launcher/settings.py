"""What the launcher reads from the environment. The services read their own settings (WF_PREFIX, WF_SEED,
WF_SEND_FAILURE_RATE, ...) from the same environment, which the launcher passes through to them."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_DIR = Path(__file__).resolve().parents[2]


class LauncherSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # Unset or empty: the launcher runs a nats-server of its own.
    nats_url: str = Field(default="", alias="NATS_URL")
    api_port: int = Field(default=8000, alias="WF_API_PORT", gt=0, lt=65536)
    broadcaster_port: int = Field(default=8001, alias="WF_BROADCASTER_PORT", gt=0, lt=65536)
    # Metrics ports of the first orchestrator and processor; further replicas (--replicas) get free ports. 0: any.
    orchestrator_port: int = Field(default=8002, alias="WF_ORCHESTRATOR_PORT", ge=0, lt=65536)
    processor_port: int = Field(default=8003, alias="WF_PROCESSOR_PORT", ge=0, lt=65536)
    # Replicas of each stream and bucket. Unset: 1 on the launcher's own server, 3 on its own cluster (--cluster).
    stream_replicas: int | None = Field(default=None, alias="WF_REPLICAS", ge=1, le=5)
    data_dir: Path = Field(default=PROJECT_DIR / "data", alias="WF_DATA_DIR")
    # The API's tokens: unset, a local run makes its own (WF_DATA_DIR/secrets/api-tokens.json). WF_AUTH=off: none.
    api_tokens_file: str = Field(default="", alias="WF_API_TOKENS_FILE")
    auth: str = Field(default="on", alias="WF_AUTH")
    # The query side's index: unset, a SQLite file in the data directory; a PostgreSQL URL
    # (postgresql+asyncpg://user:password@host/db) to keep it there.
    index_url: str = Field(default="", alias="WF_INDEX_URL")
    indexer_port: int = Field(default=8004, alias="WF_INDEXER_PORT", ge=0, lt=65536)  # its /metrics, /healthz
    notifier_port: int = Field(default=8005, alias="WF_NOTIFIER_PORT", ge=0, lt=65536)  # its /metrics, /healthz
    payments_port: int = Field(default=8007, alias="WF_PAYMENTS_PORT", ge=0, lt=65536)  # its /metrics, /healthz
    # The payment provider the payments worker pays through. Unset: a sandbox of the launcher's own, on
    # WF_PAYMENTS_SANDBOX_PORT, that pays nothing for real (services/payments/sandbox.py).
    payments_url: str = Field(default="", alias="WF_PAYMENTS_URL")
    payments_sandbox_port: int = Field(default=8026, alias="WF_PAYMENTS_SANDBOX_PORT", gt=0, lt=65536)
    # Unset: the launcher's own nats-server syncs every write to disk before acknowledging it. Set (a duration in
    # seconds, e.g. 120s): it syncs that often, and a power cut loses what was acknowledged since (jetstream.conf).
    unsafe_nats_sync_interval: str = Field(default="", alias="WF_UNSAFE_NATS_SYNC_INTERVAL")
