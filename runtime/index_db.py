"""Where the index is (WF_INDEX_URL) and how a service connects to it; its layout is contracts/index.py."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///data/index.sqlite"  # relative to where the service runs (make run: WF_DATA_DIR)


class IndexSettings(BaseSettings):
    """Where the index is: read by the indexer (which writes it) and the API (which reads it)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True, hide_input_in_errors=True)

    index_url: str = Field(default=DEFAULT_URL, alias="WF_INDEX_URL")


SQLITE_BUSY_TIMEOUT_MS = 5000


def connect(url: str) -> AsyncEngine:
    """An engine for the index. SQLite: in WAL mode (readers do not wait for the writer), waiting on a lock rather
    than failing at once, with foreign keys on. A server (PostgreSQL): each pooled connection is checked as it is
    taken, so one the server dropped (a restart) is replaced rather than failing the request that took it."""
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    engine = create_async_engine(url, pool_pre_ping=not is_sqlite)
    if is_sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _configure(connection, _record) -> None:
            cursor = connection.cursor()
            # The busy timeout first: switching a new file to WAL takes a lock, which then waits rather than fails.
            for pragma in (
                f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
                "journal_mode=WAL",
                "foreign_keys=ON",
                "synchronous=NORMAL",
            ):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

    return engine
