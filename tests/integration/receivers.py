"""Real receivers for what the notifier sends: an HTTP server that takes webhooks (and can be down), and an SMTP
server (aiosmtpd) that keeps each mail."""

import asyncio
import email
import email.policy
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from services.launcher.nats_server import free_port
from services.notifier.catcher import WebhookCatcher
from tests.integration.serving import served


@dataclass
class Webhook:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def key(self) -> str:
        return self.headers["idempotency-key"]


class WebhookReceiver(WebhookCatcher):
    """The catcher, as the tests read it: what it took, in order."""

    @property
    def taken_webhooks(self) -> list[Webhook]:
        return [Webhook(headers, body) for headers, body in self.taken.values()]

    def kinds(self, workflow_id: str) -> list[str]:
        return [
            w.json["notification"]["kind"]
            for w in self.taken_webhooks
            if w.json["notification"]["workflow_id"] == workflow_id
        ]


@asynccontextmanager
async def webhook_receiver(port: int = 0) -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A receiver on a real port, and its URL."""
    receiver = WebhookReceiver()
    async with served(receiver, port=port, ready=False) as address:
        yield receiver, f"http://{address}/hooks"


class Mailbox:
    """aiosmtpd's handler: keeps every mail."""

    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.mails.append(message)
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


async def until(probe, timeout_s: float = 20.0):
    """Poll `probe` until it is truthy; its last value on failure."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (value := probe()):
        assert asyncio.get_running_loop().time() < deadline, f"not in time: {value!r}"
        await asyncio.sleep(0.05)
    return value
