"""`make run`'s own subscriptions, made once on its own NATS: `dev` (who holds every role, so every wait is theirs)
is told by e-mail (dev@localhost) and by a webhook to the local catcher (`python -m services.notifier.catcher`, on
127.0.0.1:1025 and :8025), so the first expense of a fresh run already sends both. Until the catcher runs, the
notifier keeps trying (nothing is lost: it delivers them once the catcher is up)."""

import hashlib
import secrets
from datetime import UTC, datetime

import nats
from nats.js.errors import KeyWrongLastSequenceError

from contracts.auth import Role, answering_for
from contracts.notifications import Subscription
from contracts.topology import Topology
from runtime.kv import create_once

CATCHER_WEBHOOK = "http://127.0.0.1:8025/hooks"
DEV, DEV_EMAIL = "dev", "dev@localhost"


def _id(name: str) -> str:
    """A fixed id (a subscription id's shape: 32 hex digits), so a later run finds the one made before."""
    return hashlib.sha256(f"make-run-{name}".encode()).hexdigest()[:32]


def local_subscriptions() -> list[Subscription]:
    roles = sorted(Role)
    owner = {"owner": DEV, "owner_roles": roles, "people": list(answering_for(DEV, roles))}
    made = {"created_at": datetime.now(UTC)}
    webhook = {"id": _id("webhook"), "channel": "webhook", "url": CATCHER_WEBHOOK}
    email = {"id": _id("email"), "channel": "email", "email": DEV_EMAIL}
    return [
        Subscription.model_validate(webhook | owner | made | {"secret": f"whsec_{secrets.token_urlsafe(24)}"}),
        Subscription.model_validate(email | owner | made),
    ]


async def ensure_local_subscriptions(admin_url: str, topology: Topology) -> str:
    """Make the local subscriptions unless they exist; the webhook's secret (to check its signatures). `admin_url`:
    one server's URL or several, comma-separated (a cluster)."""
    client = await nats.connect(admin_url.split(","), connect_timeout=5)
    try:
        bucket = await client.jetstream().key_value(topology.subscriptions_bucket)
        made = {}
        for subscription in local_subscriptions():
            try:
                await create_once(bucket, subscription.id, subscription.model_dump_json().encode())
                made[subscription.id] = subscription
            except KeyWrongLastSequenceError:
                pass  # made by an earlier run: kept, with its secret
        if (webhook := made.get(_id("webhook"))) is None:
            webhook = Subscription.model_validate_json((await bucket.get(_id("webhook"))).value or b"")
        return webhook.secret
    finally:
        await client.close()
