"""How a delivery reaches its receiver: a webhook (JSON or Slack's shape, signed) or an e-mail over SMTP.

A webhook is signed as Stripe signs theirs: `Wf-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under
the subscription's secret>`; a receiver recomputes it, and refuses an old `t` to stop replays. `Idempotency-Key` is the
same on every try of one delivery (and an e-mail's Message-ID carries it), so a receiver that honours it acts once."""

import asyncio
import hashlib
import hmac
import json
import smtplib
import time
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage

import httpx

from contracts.links import DecisionLink
from contracts.notifications import Delivery, Subscription
from services.notifier.rules import decider

WEBHOOK_TIMEOUT_S = 10.0
SMTP_TIMEOUT_S = 30.0
LINK_LIFETIME = timedelta(days=7)  # at most; a wait's deadline ends its links sooner


class DeliveryFailed(Exception):
    """The receiver did not take it (down, refused, timed out): tried again later."""


@dataclass(frozen=True)
class Message:
    """What a delivery says, the same on every channel."""

    subject: str
    text: str
    body: dict


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Composer:
    """Turns a delivery into its message, with decision links for the one it goes to, when the wait is theirs."""

    def __init__(self, public_url: str, link_secret: bytes) -> None:
        self.public_url, self.link_secret = public_url.rstrip("/"), link_secret

    def message(self, delivery: Delivery, subscription: Subscription) -> Message:
        notification = delivery.notification
        links = self.links(delivery, subscription)
        page = f"{self.public_url}/#/workflows/{notification.workflow_id}"
        lines = [notification.summary, "", f"Open it: {page}"]
        lines += [f"{decision.capitalize()}: {url}" for decision, url in links.items()]
        body = {
            "id": delivery.idempotency_key,
            "subscription_id": delivery.subscription_id,
            "notification": notification.model_dump(mode="json"),
            "url": page,
            "links": links,
        }
        return Message(subject=notification.summary, text="\n".join(lines) + "\n", body=body)

    def links(self, delivery: Delivery, subscription: Subscription) -> dict[str, str]:
        notification = delivery.notification
        person = decider(subscription, notification)
        if person is None:
            return {}
        expires_at = notification.occurred_at + LINK_LIFETIME
        if notification.deadline_at:
            expires_at = min(expires_at, notification.deadline_at)
        links = {}
        for decision in notification.decisions:
            link = DecisionLink.new(
                notification.workflow_id, notification.entered_sequence, person, decision, expires_at
            )
            links[decision] = f"{self.public_url}/#/decide/{link.sign(self.link_secret)}"
        return links


class Webhooks:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, delivery: Delivery, subscription: Subscription, message: Message) -> None:
        body = json.dumps(slack(message) if subscription.format == "slack" else message.body).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": delivery.idempotency_key,
            "Wf-Signature": signature(subscription.secret, int(time.time()), body),
        }
        try:
            answer = await self.client.post(str(subscription.url), content=body, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{type(error).__name__}: {error}") from error
        if not answer.is_success:
            raise DeliveryFailed(f"the receiver answered {answer.status_code}: {answer.text[:200]}")


def slack(message: Message) -> dict:
    """What a Slack incoming webhook takes: the text, with the links as Slack's <url|label>."""
    links = message.body["links"]
    actions = " · ".join(f"<{url}|{decision.capitalize()}>" for decision, url in links.items())
    text = f"{message.subject}\n<{message.body['url']}|Open it>" + (f" · {actions}" if actions else "")
    return {"text": text}


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    sender: str
    username: str = ""
    password: str = ""
    starttls: bool = False


class Mail:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def send(self, delivery: Delivery, subscription: Subscription, message: Message) -> None:
        if not subscription.email:
            raise DeliveryFailed("the subscription has no e-mail address")
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = self.server.sender, subscription.email, message.subject
        domain = self.server.sender.rpartition("@")[2] or "localhost"
        mail["Message-ID"] = f"<{delivery.idempotency_key}@{domain}>"
        mail["Idempotency-Key"] = delivery.idempotency_key
        mail.set_content(message.text)
        try:
            await asyncio.to_thread(self._send, mail)
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryFailed(f"SMTP: {error}") from error

    def _send(self, mail: EmailMessage) -> None:
        server = self.server
        with smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT_S) as smtp:
            if server.starttls:
                smtp.starttls()
            if server.username:
                smtp.login(server.username, server.password)
            smtp.send_message(mail)
