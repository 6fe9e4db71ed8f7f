"""The broadcaster's settings, read once from the environment."""

from pydantic import Field

from runtime.tokens import AuthSettings


class BroadcasterSettings(AuthSettings):
    port: int = Field(default=8001, ge=0, le=65535, alias="WF_BROADCASTER_PORT")
    # Events waiting for one client; a client that falls this far behind is dropped (and may reconnect).
    client_queue_size: int = Field(default=1000, ge=1, alias="WF_BROADCASTER_QUEUE_SIZE")
    close_timeout_s: float = Field(default=5.0, gt=0, alias="WF_BROADCASTER_CLOSE_TIMEOUT_S")
    # A client that receives nothing for this long is sent a heartbeat with the sequence it is up to.
    heartbeat_s: float = Field(default=15.0, gt=0, alias="WF_BROADCASTER_HEARTBEAT_S")
    # Resuming clients read the log in pages of this many events, at most `replay_concurrency` pages at once.
    replay_page_size: int = Field(default=256, ge=1, le=10_000, alias="WF_BROADCASTER_REPLAY_PAGE_SIZE")
    replay_concurrency: int = Field(default=8, ge=1, alias="WF_BROADCASTER_REPLAY_CONCURRENCY")
