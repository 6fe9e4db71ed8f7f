"""API tokens: who holds a bearer token, what it may do, and until when. The API and the broadcaster read the tokens
from the JSON file named by WF_API_TOKENS_FILE, which keeps only each token's SHA-256 digest:

    {"sha256:<64 hex digits>": {"name": "ann", "roles": ["requester", "approver"],
                                "expires_at": "2027-01-31T00:00:00Z"}, ...}

`expires_at` (an ISO time with its zone) is optional: without it a token holds until it is removed. The holder's name
is who the log records as the approver of what the token approves. The services watch the file: a token removed from
it is refused from the next check on (at most a second later), without a restart. A service with no tokens refuses to
start, unless WF_AUTH=off says, on purpose, that anyone may do anything."""

import asyncio
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from contracts.auth import TokenHolder
from runtime.settings import ServiceSettings

log = logging.getLogger(__name__)

DIGEST_PREFIX = "sha256:"
CHECK_EVERY_S = 1.0  # how often, at most, the services look whether the tokens file changed


class AuthNotConfigured(Exception):
    """The tokens are missing or unreadable: the service must not start (it would be open, or refuse everyone)."""


class TokenRefused(Exception):
    """Why a token is not let in (unknown, removed, or expired): the 401's detail, the 4401's reason."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_digest(token: str) -> str:
    return DIGEST_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The tokens a service accepts, by digest: a token is never kept, only what it hashes to."""

    def __init__(self, holders: dict[str, TokenHolder]) -> None:
        self._holders = holders

    @classmethod
    def issued(cls, tokens: dict[str, TokenHolder]) -> "Tokens":
        """From tokens (token -> holder): what a tokens file keeps of them."""
        return cls({token_digest(token): holder for token, holder in tokens.items()})

    def __len__(self) -> int:
        return len(self._holders)

    @property
    def by_digest(self) -> dict[str, TokenHolder]:
        return dict(self._holders)

    def holder(self, token: str | None) -> TokenHolder | None:
        return self._holders.get(token_digest(token)) if token else None

    def admit(self, token: str, now: datetime) -> TokenHolder:
        """The token's holder, unless the token is unknown or expired at `now`: then TokenRefused, with the reason."""
        holder = self.holder(token)
        if holder is None:
            raise TokenRefused("the token is not valid")
        if holder.expires_at is not None and now >= holder.expires_at:
            raise TokenRefused(f"the token expired at {holder.expires_at.isoformat()}")
        return holder

    @classmethod
    def from_file(cls, path: Path) -> "Tokens":
        try:
            entries = json.loads(path.read_text())
        except OSError as error:
            raise AuthNotConfigured(f"cannot read the API tokens file {path}: {error.strerror}") from None
        except ValueError as error:
            raise AuthNotConfigured(f"the API tokens file {path} is not JSON: {error}") from None
        if not isinstance(entries, dict):
            raise AuthNotConfigured(f"the API tokens file {path} must hold a JSON object: digest -> holder")
        holders = {}
        for digest, holder in entries.items():
            if not (digest.startswith(DIGEST_PREFIX) and _is_sha256(digest.removeprefix(DIGEST_PREFIX))):
                raise AuthNotConfigured(
                    f"the API tokens file {path}: key {digest[:12]!r}… is not 'sha256:<64 hex digits>'; "
                    "store a token's digest, never the token (printf %s TOKEN | sha256sum)"
                )
            try:
                holders[digest.lower()] = TokenHolder.model_validate(holder)
            except ValidationError as error:
                problem = error.errors()[0]
                where = ".".join(str(part) for part in problem["loc"])
                problem_text = f"{digest[:19]}…: {where}: {problem['msg']}"
                raise AuthNotConfigured(f"the API tokens file {path}: {problem_text}") from None
        return cls(holders)

    def write(self, path: Path) -> None:
        """Write the file, digests only. A new file is readable by its owner only. An existing one is rewritten in
        place, so it keeps its permissions and its inode: compose mounts it into the containers as a file (a
        secret), and a mount of a file keeps showing the old one when another is renamed over it."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        entries = {}
        for digest, holder in self._holders.items():
            entries[digest] = holder.model_dump(mode="json", exclude_none=True) | {"roles": sorted(holder.roles)}
        content = json.dumps(entries, indent=2).encode()
        # Created 0600 rather than chmod-ed after: the digests are never readable by others, even for a moment.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written = 0
            while written < len(content):  # one write in practice: a reader catches a half-written file rarely
                written += os.write(descriptor, content[written:])
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(character in "0123456789abcdefABCDEF" for character in text)


def read_tokens(path: Path) -> Tokens:
    """The tokens of a file a service may take: readable, of the right shape, and not empty (which would refuse
    everyone). Raises AuthNotConfigured with the reason."""
    tokens = Tokens.from_file(path)
    if not tokens:
        raise AuthNotConfigured(f"the API tokens file {path} holds no tokens")
    return tokens


def _file_version(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is written: its inode (replaced), modification time and size (rewritten)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


class TokensFile:
    """The tokens of a file, read again when it changes, so that a token removed from it (revoked) is refused without
    a restart. Whether it changed is looked at no more than once every `check_every_s`, by the requests themselves
    (a clock reading, and a stat once a second: nothing on the hot path) or by `watching()`. A changed file that
    cannot be used (unreadable, not a tokens file, empty) is not taken: the tokens read before stay, and the problem
    is logged as an error, so the service neither opens to anyone nor refuses everyone."""

    def __init__(
        self, path: Path, check_every_s: float = CHECK_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self._check_every_s, self._clock = check_every_s, clock
        self._version = _file_version(path)  # before reading: a write meanwhile is seen at the next check
        self._tokens = read_tokens(path)  # at start, a file that cannot be used stops the service
        self._next_check = clock() + check_every_s
        self._changed = asyncio.Event()  # set (and replaced) each time other tokens are taken

    def current(self) -> Tokens:
        """The tokens in force: those of the file as it was at the last check."""
        if self._clock() >= self._next_check:
            self.check()
        return self._tokens

    def admit(self, token: str, now: datetime | None = None) -> TokenHolder:
        """The token's holder; TokenRefused with the reason when it is unknown, removed or expired."""
        return self.current().admit(token, now or datetime.now(UTC))

    def check(self) -> None:
        """Read the file again if it changed since it was last read."""
        self._next_check = self._clock() + self._check_every_s
        version = _file_version(self.path)
        if version == self._version:
            return
        try:
            tokens = read_tokens(self.path)
        except AuthNotConfigured as problem:
            settled = _file_version(self.path) == version  # else it is being written: look again at the next check
            self._version = version if settled else None
            if settled:
                log.error("API tokens NOT reloaded, still accepting the %d read before: %s", len(self._tokens), problem)
            return
        self._version = version if _file_version(self.path) == version else None
        log.info("API tokens file %s changed: %d tokens now (%d before)", self.path, len(tokens), len(self._tokens))
        self._tokens = tokens
        self._changed.set()
        self._changed = asyncio.Event()

    async def until_refused(self, token: str) -> str:
        """Wait until `token` is refused (it expires, or the file drops it), and say why: how an open connection
        learns that its token no longer holds. Needs the file checked meanwhile: `watching()`."""
        while True:
            try:
                holder = self.admit(token)
            except TokenRefused as refusal:
                return str(refusal)
            changed = self._changed
            until_expiry = (holder.expires_at - datetime.now(UTC)).total_seconds() if holder.expires_at else None
            try:
                async with asyncio.timeout(until_expiry):
                    await changed.wait()
            except TimeoutError:
                pass

    @asynccontextmanager
    async def watching(self, *_: object) -> AsyncIterator[None]:
        """Check the file every `check_every_s` for as long as this lasts (an app's lifespan), requests or not."""

        async def keep_checking() -> None:
            while True:
                await asyncio.sleep(self._check_every_s)
                self.check()

        checking = asyncio.create_task(keep_checking(), name="api-tokens-check")
        try:
            yield
        finally:
            checking.cancel()
            await asyncio.gather(checking, return_exceptions=True)


class AuthSettings(ServiceSettings):
    """What the services that take tokens (the API and the broadcaster) read."""

    tokens_file: Path | None = Field(default=None, alias="WF_API_TOKENS_FILE")
    # "off" runs open, with every caller as ANYONE: only ever on purpose, never by forgetting a file.
    auth: Literal["on", "off"] = Field(default="on", alias="WF_AUTH")

    @field_validator("tokens_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None  # WF_API_TOKENS_FILE= names no file (not the current directory)


def load_tokens(settings: AuthSettings) -> TokensFile | None:
    """The tokens to check callers against; None when WF_AUTH=off. Raises AuthNotConfigured when there are none."""
    if settings.auth == "off":
        return None
    if settings.tokens_file is None:
        raise AuthNotConfigured(
            "no API tokens: set WF_API_TOKENS_FILE to a tokens file (`make run` writes one to data/secrets/), "
            "or WF_AUTH=off to let anyone in (a local experiment only)"
        )
    return TokensFile(settings.tokens_file)


def write_tokens_file(path: Path, tokens: dict[str, TokenHolder]) -> None:
    """Write `tokens` (token -> holder) as a tokens file, digests only, readable by its owner only."""
    Tokens.issued(tokens).write(path)


def new_token() -> str:
    return secrets.token_urlsafe(32)
