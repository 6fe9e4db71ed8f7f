"""Subscriptions (who is told what, and where) in the `<prefix>_subscriptions` bucket, and one-click decisions: a
signed link from a notification, checked and then applied as the person it names."""

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from contracts.auth import TokenHolder, answering_for
from contracts.commands import ApproveWorkflow, RejectWorkflow
from contracts.ids import new_id
from contracts.links import DecisionLink, LinkRefused
from contracts.notifications import EmailSubscriptionRequest, Subscription, SubscriptionRequest
from contracts.state import WorkflowState
from contracts.topology import Topology
from runtime.eventlog import current_entries, left_since
from runtime.kv import create_once
from runtime.nats_link import NatsLink


class SubscriptionNotFound(LookupError):
    def __init__(self, subscription_id: str) -> None:
        super().__init__(f"no subscription {subscription_id} of yours")


class NoEmailAddress(ValueError):
    pass


class LinkNotTaken(Exception):
    """A decision link that cannot be used: `code` says why (bad_link, link_expired, link_used, moved_on)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class Subscriptions:
    def __init__(self, link: NatsLink, topology: Topology) -> None:
        self.link, self.topology = link, topology

    async def create(self, asked: SubscriptionRequest, holder: TokenHolder) -> Subscription:
        """Stored for `holder`; an e-mail goes to its profile's address unless the request names one. Whose waits it
        follows: the request's `people`, or else the holder's own (its name and roles)."""
        request = asked.root
        if isinstance(request, EmailSubscriptionRequest):
            email = request.email or holder.email
            if not email:
                raise NoEmailAddress(f"{holder.name}'s token has no e-mail address: give one as `email`")
            channel: dict = {"email": email}
        else:
            channel = {"url": request.url, "format": request.format, "secret": f"whsec_{secrets.token_urlsafe(24)}"}
        subscription = Subscription(
            id=new_id(),
            owner=holder.name,
            owner_roles=sorted(holder.roles),
            owner_groups=sorted(holder.groups),
            channel=request.channel,
            **channel,
            types=request.types,
            kinds=request.kinds,
            people=list(answering_for(holder.name, holder.roles, holder.groups))
            if request.people is None
            else request.people,
            created_at=datetime.now(UTC),
        )
        kv = await self.link.js.key_value(self.topology.subscriptions_bucket)
        await kv.create(subscription.id, subscription.model_dump_json().encode())
        return subscription

    async def list(self, holder: TokenHolder) -> list[Subscription]:
        """The holder's own; an operator's: everyone's."""
        entries = await current_entries(self.link.js, self.topology, self.topology.subscriptions_bucket)
        found = [Subscription.model_validate_json(value) for value in entries.values()]
        return sorted((s for s in found if _sees(holder, s)), key=lambda subscription: subscription.created_at)

    async def delete(self, subscription_id: str, holder: TokenHolder) -> None:
        kv = await self.link.js.key_value(self.topology.subscriptions_bucket)
        try:
            entry = await kv.get(subscription_id)
        except KeyNotFoundError:
            raise SubscriptionNotFound(subscription_id) from None
        if entry.value is None or not _sees(holder, Subscription.model_validate_json(entry.value)):
            raise SubscriptionNotFound(subscription_id)
        await kv.delete(subscription_id)


class DecisionLinks:
    """Checks a decision link and applies it once."""

    def __init__(
        self,
        link: NatsLink,
        topology: Topology,
        key: bytes | None,
        find: Callable[[str], Awaitable[WorkflowState | None]],
        holder_who_may: Callable[[str, str], TokenHolder | None],
    ) -> None:
        self.link, self.topology, self.key, self.find = link, topology, key, find
        self.holder_who_may = holder_who_may

    async def check(self, token: str) -> tuple[DecisionLink, WorkflowState]:
        """The link a token holds and its workflow, if the link may still be used: signed here, not expired, not
        used, and its workflow still in the waiting state it was sent for. LinkNotTaken says why not."""
        if self.key is None:  # so no link was issued here
            raise LinkNotTaken(
                "bad_link", "decision links are off here (WF_LINK_SECRET is not set): not a link of ours"
            )
        try:
            decision = DecisionLink.verified(token, self.key)
        except LinkRefused as refused:
            raise LinkNotTaken("bad_link", str(refused)) from None
        if decision.expires_at <= datetime.now(UTC):
            raise LinkNotTaken("link_expired", f"the link expired at {decision.expires_at:%Y-%m-%d %H:%M} UTC")
        if self.holder_who_may(decision.person, decision.decision) is None:
            raise LinkNotTaken("forbidden", f"{decision.person} may no longer {decision.decision}: nothing changed")
        if await self._used(decision):
            raise LinkNotTaken("link_used", "the link was used already: each link decides once")
        state = await self.find(decision.workflow_id)
        js = self.link.js
        if state is None or await left_since(js, self.topology, decision.workflow_id, decision.entered_sequence):
            raise LinkNotTaken(
                "moved_on", f"workflow {decision.workflow_id} no longer waits where the link was sent: nothing changed"
            )
        return decision, state

    def command(self, decision: DecisionLink) -> ApproveWorkflow | RejectWorkflow:
        """The decision as its person's command; its id is the link's, so a second click is the same command."""
        workflow_id, message_id, person = decision.workflow_id, f"link-{decision.nonce}", decision.person
        holder = self.holder_who_may(person, decision.decision)
        by = {"approver": person, "actor": person, "groups": sorted(holder.groups) if holder else []}
        if decision.decision == "approve":
            comment = "approved from a notification's link"
            return ApproveWorkflow(workflow_id=workflow_id, message_id=message_id, comment=comment, **by)
        reason = "rejected from a notification's link"
        return RejectWorkflow(workflow_id=workflow_id, message_id=message_id, reason=reason, **by)

    async def mark_used(self, decision: DecisionLink) -> None:
        kv = await self.link.js.key_value(self.topology.links_bucket)
        try:
            await create_once(kv, decision.nonce, decision.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            pass  # the same link, applied by a second click meanwhile: the same command

    async def _used(self, decision: DecisionLink) -> bool:
        kv = await self.link.js.key_value(self.topology.links_bucket)
        try:
            await kv.get(decision.nonce)
        except KeyNotFoundError:
            return False
        return True


def _sees(holder: TokenHolder, subscription: Subscription) -> bool:
    return subscription.owner == holder.name or "operator" in holder.roles
