"""What the notifier and the API agree on: a subscription (who is told what, and where), a notification (what happened
that someone should know), and a delivery (one notification for one subscription, on the deliveries stream).

The notifier follows the event log and turns what happens into notifications (services/notifier/rules.py); the API
keeps the subscriptions in the `<prefix>_subscriptions` bucket, key = subscription id."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, RootModel

from contracts.auth import EMAIL
from contracts.commands import Actor

NotificationKind = Literal["waiting", "reminder", "escalated", "ended"]
NOTIFICATION_KINDS: tuple[NotificationKind, ...] = ("waiting", "reminder", "escalated", "ended")
Channel = Literal["webhook", "email"]
Decision = Literal["approve", "reject"]


class SubscriptionFilter(BaseModel):
    """What a subscription is told of. Empty `types`: every type. `people` (actors' names or "role:<role>", matched
    against who a workflow waits for): unset, the subscriber's own name and roles; empty, everyone's."""

    model_config = ConfigDict(extra="forbid")

    types: list[str] = Field(default=[], max_length=50)
    kinds: list[NotificationKind] = Field(default=list(NOTIFICATION_KINDS), min_length=1)
    people: Annotated[list[str], Field(max_length=50)] | None = None


class WebhookSubscriptionRequest(SubscriptionFilter):
    channel: Literal["webhook"]
    url: HttpUrl
    format: Literal["json", "slack"] = "json"  # the body: ours, or what a Slack incoming webhook takes


class EmailSubscriptionRequest(SubscriptionFilter):
    channel: Literal["email"]
    email: str = Field(default="", pattern=f"^$|{EMAIL}")  # empty: the token's profile address


class SubscriptionRequest(
    RootModel[Annotated[WebhookSubscriptionRequest | EmailSubscriptionRequest, Field(discriminator="channel")]]
):
    """What `POST /subscriptions` takes: a webhook (its `url`) or an e-mail, told apart by `channel`."""


class Subscription(BaseModel):
    """A stored subscription. Its `secret` signs its webhooks (shown once, when it is created)."""

    id: str
    owner: Actor
    owner_roles: list[str] = []  # the owner's roles when it subscribed: which waits it may answer with a link
    owner_groups: list[str] = []  # and the owner's groups
    channel: Channel
    url: HttpUrl | None = None
    format: Literal["json", "slack"] = "json"
    email: str | None = None
    types: list[str] = []
    kinds: list[NotificationKind] = list(NOTIFICATION_KINDS)
    people: list[str] = []
    secret: str = ""
    created_at: AwareDatetime


class SubscriptionView(BaseModel):
    """A subscription as `GET /subscriptions` shows it: everything but its secret."""

    id: str
    owner: str
    channel: Channel
    url: str | None
    format: str
    email: str | None
    types: list[str]
    kinds: list[NotificationKind]
    people: list[str]
    created_at: datetime

    @classmethod
    def of(cls, subscription: Subscription) -> "SubscriptionView":
        return cls.model_validate(
            subscription.model_dump(exclude={"secret", "owner_roles", "owner_groups"})
            | {"url": subscription.url and str(subscription.url)}
        )


class Notification(BaseModel):
    """Something a person should know about one workflow. `id` is stable for what happened (the same event gives the
    same id), so each delivery's idempotency key is too."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: NotificationKind
    workflow_id: str
    workflow_type: str
    state: str  # the business state it is in now
    entered_sequence: int  # the log's event that entered that state: what a decision link is bound to
    people: tuple[str, ...] = ()  # who it waits for (names, "role:<role>"); empty for an end
    decisions: tuple[Decision, ...] = ()  # what the wait takes that a link can carry: approve, reject
    deadline_at: AwareDatetime | None = None
    occurred_at: AwareDatetime
    summary: str


class Delivery(BaseModel):
    """One notification for one subscription: a message on `<prefix>.deliveries.<subscription id>`."""

    subscription_id: str
    notification: Notification

    @property
    def idempotency_key(self) -> str:
        return f"{self.notification.id}.{self.subscription_id}"
