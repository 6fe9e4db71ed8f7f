"""Who may do what: the roles a token holder has, the roles each command takes, and a holder as the services see
it. How tokens are issued, stored and checked is runtime/tokens.py."""

from collections.abc import Iterable
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.commands import Actor, Group

EMAIL = r"^[^@\s<>]+@[^@\s<>]+$"


class Role(StrEnum):
    REQUESTER = "requester"  # creates and processes workflows, and cancels them
    APPROVER = "approver"  # approves and rejects
    OPERATOR = "operator"  # cancels, terminates, retries and archives any workflow


# The roles each command takes: the API refuses a command without one (403), and a waiting state that any holder of
# the role may answer is waiting for "role:<role>" (the read model's `waiting_for`).
COMMAND_ROLES: dict[str, frozenset[Role]] = {
    "create": frozenset({Role.REQUESTER}),
    "process": frozenset({Role.REQUESTER}),
    "cancel": frozenset({Role.REQUESTER, Role.OPERATOR}),  # a requester withdraws a request; an operator stops any
    "approve": frozenset({Role.APPROVER}),
    "reject": frozenset({Role.APPROVER}),
    "terminate": frozenset({Role.OPERATOR}),
    "retry": frozenset({Role.OPERATOR}),
    "archive": frozenset({Role.OPERATOR}),
    "migrate": frozenset({Role.OPERATOR}),
    "reassign": frozenset({Role.OPERATOR}),
    "publish_type": frozenset({Role.OPERATOR}),
}


def answering_for(name: str, roles: Iterable[str], groups: Iterable[str] = ()) -> tuple[str, ...]:
    """Who a person answers a wait for, as `waiting_for` names them: themselves, "role:<role>" for each role and
    "group:<group>" for each group."""
    return (name, *(f"role:{role}" for role in sorted(roles)), *(f"group:{group}" for group in sorted(groups)))


class TokenHolder(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Actor
    roles: frozenset[Role] = Field(min_length=1)
    groups: frozenset[Group] = frozenset()  # e.g. "managers": a type's wait may take a command from a group
    expires_at: AwareDatetime | None = None  # refused from then on; None: until it is removed from the file
    email: str | None = Field(default=None, pattern=EMAIL)  # its profile: where its e-mail notifications go


# Whoever calls when WF_AUTH=off: anyone, with every role.
ANYONE = TokenHolder(name="anonymous", roles=frozenset(Role))
