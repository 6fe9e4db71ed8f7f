"""The API's settings, read once from the environment."""

from pathlib import Path

from pydantic import Field

from runtime.index_db import IndexSettings
from runtime.settings import LinkSettings
from runtime.tokens import AuthSettings

MAX_WAIT_S = 60.0  # the longest a request may hold its connection waiting for an outcome

PROJECT_WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def default_web_dir() -> Path:
    """The built web app (`web/dist`, what `npm run build` writes) when there is one, else `web/` itself."""
    built = PROJECT_WEB_DIR / "dist"
    return built if built.is_dir() else PROJECT_WEB_DIR


class ApiSettings(AuthSettings, IndexSettings, LinkSettings):
    port: int = Field(default=8000, ge=0, le=65535, alias="WF_API_PORT")
    # How long a command request waits for its outcome when it does not say (`?wait=`).
    command_timeout_s: float = Field(default=5.0, ge=0, le=MAX_WAIT_S, alias="WF_COMMAND_TIMEOUT_S")
    # Where browsers reach the broadcaster; without it, /config points at this host on the broadcaster's port.
    public_broadcaster_url: str | None = Field(default=None, alias="WF_PUBLIC_BROADCASTER_URL")
    broadcaster_port: int = Field(default=8001, ge=0, le=65535, alias="WF_BROADCASTER_PORT")
    web_dir: Path = Field(default_factory=default_web_dir, alias="WF_WEB_DIR")
    # Commands (POSTs) one token may send in a second; more answer 429 with Retry-After.
    commands_per_second: int = Field(default=50, ge=1, alias="WF_API_COMMANDS_PER_S")
    # The most workflows one page of a list answers.
    max_page: int = Field(default=1000, ge=1, le=10_000, alias="WF_API_MAX_PAGE")
    # Bulk actions: the commands one bulk has in flight at once; how long an API process holds a bulk it runs unless
    # it renews the hold (after that, another takes it over); the most workflows one bulk may act on.
    bulk_concurrency: int = Field(default=16, ge=1, le=256, alias="WF_BULK_CONCURRENCY")
    bulk_lease_s: float = Field(default=15.0, gt=0, alias="WF_BULK_LEASE_S")
    bulk_max: int = Field(default=100_000, ge=1, alias="WF_BULK_MAX")
