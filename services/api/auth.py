"""Who is calling, and what they may do: the bearer token's holder (401 without a token that is in the tokens file
and has not expired), the roles each command takes (403 without one), and a budget of commands per second for each
token (429).

Every request but the open ones (/healthz, /metrics, /schema and the web page's files) needs a token; a read needs
nothing more. A command needs one of the roles COMMAND_ROLES gives it. All of this is decided before the request's
body is read and before anything reaches NATS."""

from collections.abc import Callable
from datetime import UTC, datetime

from litestar.connection import ASGIConnection, Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.authentication import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.types import ASGIApp, Guard

from contracts.auth import ANYONE, COMMAND_ROLES, TokenHolder
from runtime.tokens import TokenRefused, TokensFile, bearer_token, token_digest

# Open to anyone: probes, scrapers, the API's description, and the web page (which then signs in with a token).
OPEN_PATHS = ["^/healthz$", "^/metrics$", "^/schema", "^/asyncapi"]
OPEN_ROUTE_OPT = "exclude_from_auth"  # a route handler's opt key that makes it open (the web page's files)

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="approval-workflows"'}


class TokenAuthentication(AbstractAuthenticationMiddleware):
    """Sets `request.user` to the token's holder, and `request.auth` to the token's digest (what the rate limit is
    kept by). Without tokens (WF_AUTH=off) every caller is ANYONE."""

    def __init__(self, app: ASGIApp, tokens: TokensFile | None) -> None:
        super().__init__(app, exclude=OPEN_PATHS, exclude_from_auth_key=OPEN_ROUTE_OPT)
        self.tokens = tokens

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        if self.tokens is None:
            return AuthenticationResult(user=ANYONE, auth=None)
        token = bearer_token(connection.headers.get("Authorization"))
        if token is None:
            raise NotAuthorizedException(
                "a token is needed: send the header 'Authorization: Bearer <token>'", headers=CHALLENGE
            )
        try:
            holder = self.tokens.admit(token)
        except TokenRefused as refusal:
            raise NotAuthorizedException(str(refusal), headers=CHALLENGE) from None
        return AuthenticationResult(user=holder, auth=token_digest(token))


def authentication(tokens: TokensFile | None) -> DefineMiddleware:
    return DefineMiddleware(TokenAuthentication, tokens=tokens)


def may(command: str) -> Guard:
    """A guard that lets through the holders of a role that `command` takes."""
    roles = COMMAND_ROLES[command]

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        holder: TokenHolder = connection.user
        if holder.roles.isdisjoint(roles):
            needed = " or ".join(sorted(roles))
            raise PermissionDeniedException(f"{holder.name} may not {command}: it takes the role {needed}")

    return guard


def acting_as(holder: TokenHolder, claimed: str | None) -> str:
    """Who the log records as the one who decides: the token's holder, never a name from the body. A body that
    names someone else is refused rather than ignored, so the caller learns it cannot act for them. With WF_AUTH=off
    the body's name stands, as there is no token to take one from."""
    if holder is ANYONE:
        return claimed or ANYONE.name
    if claimed is not None and claimed != holder.name:
        raise PermissionDeniedException(f"this token is {holder.name}'s: it cannot decide as {claimed}")
    return holder.name


def commands_rate_limit(commands_per_second: int) -> DefineMiddleware:
    """At most `commands_per_second` commands (POSTs) per token in each second; reads are not counted."""

    def is_command(request: Request) -> bool:
        return request.method == "POST"

    def client_of(request: Request) -> str:
        # By token; by address when WF_AUTH=off, and on the open routes (a decision link is its own credential).
        return request.scope.get("auth") or get_remote_address(request)

    config = RateLimitConfig(
        rate_limit=("second", commands_per_second),
        identifier_for_request=client_of,
        check_throttle_handler=is_command,
        exclude=OPEN_PATHS,
    )
    return config.middleware


def holder_who_may(tokens: TokensFile | None) -> Callable[[str, str], TokenHolder | None]:
    """The token holder `person` is now, if they still hold a token, unexpired, with a role that `command` takes: a
    decision link sent to them is refused once they no longer may (a token revoked, expired, or its role taken away),
    and acts with the groups they are in now. Anyone, with every role, with WF_AUTH=off."""

    def holder(person: str, command: str) -> TokenHolder | None:
        if tokens is None:
            return TokenHolder(name=person, roles=ANYONE.roles)
        now, roles = datetime.now(UTC), COMMAND_ROLES[command]
        return next(
            (
                holder
                for holder in tokens.current().by_digest.values()
                if holder.name == person
                and not holder.roles.isdisjoint(roles)
                and (holder.expires_at is None or holder.expires_at > now)
            ),
            None,
        )

    return holder
