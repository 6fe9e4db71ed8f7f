"""API tokens: who holds a bearer token and what it may do. The API and the broadcaster read the tokens from the JSON
file named by WF_API_TOKENS_FILE, which keeps only each token's SHA-256 digest:

    {"sha256:<64 hex digits>": {"name": "ann", "roles": ["requester", "approver"]}, ...}

The holder's name is who the log records as the approver of what the token approves. A service with no tokens
refuses to start, unless WF_AUTH=off says, on purpose, that anyone may do anything."""

import hashlib
import json
import os
import secrets
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.commands import Actor
from contracts.settings import ServiceSettings

DIGEST_PREFIX = "sha256:"


class Role(StrEnum):
    REQUESTER = "requester"  # creates and processes workflows, and cancels them
    APPROVER = "approver"  # approves and rejects
    OPERATOR = "operator"  # cancels, terminates, retries and archives any workflow


class TokenHolder(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Actor
    roles: frozenset[Role] = Field(min_length=1)


# Whoever calls when WF_AUTH=off: anyone, with every role.
ANYONE = TokenHolder(name="anonymous", roles=frozenset(Role))


class AuthNotConfigured(Exception):
    """The tokens are missing or unreadable: the service must not start (it would be open, or refuse everyone)."""


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

    def __len__(self) -> int:
        return len(self._holders)

    def holder(self, token: str | None) -> TokenHolder | None:
        return self._holders.get(token_digest(token)) if token else None

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


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(character in "0123456789abcdefABCDEF" for character in text)


class AuthSettings(ServiceSettings):
    """What the services that take tokens (the API and the broadcaster) read."""

    tokens_file: Path | None = Field(None, validation_alias="WF_API_TOKENS_FILE")
    # "off" runs open, with every caller as ANYONE: only ever on purpose, never by forgetting a file.
    auth: Literal["on", "off"] = Field("on", validation_alias="WF_AUTH")

    @field_validator("tokens_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return value or None  # WF_API_TOKENS_FILE= names no file (not the current directory)


def load_tokens(settings: AuthSettings) -> Tokens | None:
    """The tokens to check callers against; None when WF_AUTH=off. Raises AuthNotConfigured when there are none."""
    if settings.auth == "off":
        return None
    if settings.tokens_file is None:
        raise AuthNotConfigured(
            "no API tokens: set WF_API_TOKENS_FILE to a tokens file (`make run` writes one to data/secrets/), "
            "or WF_AUTH=off to let anyone in (a local experiment only)"
        )
    tokens = Tokens.from_file(settings.tokens_file)
    if not tokens:
        raise AuthNotConfigured(f"the API tokens file {settings.tokens_file} holds no tokens")
    return tokens


def write_tokens_file(path: Path, tokens: dict[str, TokenHolder]) -> None:
    """Write `tokens` (token -> holder) as a tokens file, digests only, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    entries = {token_digest(token): holder.model_dump(mode="json") for token, holder in tokens.items()}
    for holder in entries.values():
        holder["roles"] = sorted(holder["roles"])
    # Created 0600 rather than chmod-ed after: the digests are never readable by others, even for a moment.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(entries, file, indent=2)


def new_token() -> str:
    return secrets.token_urlsafe(32)
