"""Real receivers for what the notifier sends: an HTTP server that takes webhooks (and can be down), and an SMTP
server (aiosmtpd) that keeps each mail."""

import asyncio
import email
import email.policy
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from services.launcher.nats_server import free_port
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


@dataclass
class WebhookReceiver:
    """An ASGI app that keeps every webhook it takes, acts on each Idempotency-Key once (as a receiver that honours
    it), and answers 503 while `down`."""

    down: bool = False
    taken: list[Webhook] = field(default_factory=list)  # each key once, in the order taken
    calls: int = 0
    repeated_keys: int = 0  # calls with a key it had taken already

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls += 1
        status = 503 if self.down else 200
        if not self.down:
            webhook = Webhook({k.decode().lower(): v.decode() for k, v in scope["headers"]}, body)
            if any(each.key == webhook.key for each in self.taken):
                self.repeated_keys += 1
            else:
                self.taken.append(webhook)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"down" if self.down else b"ok"})

    def kinds(self, workflow_id: str) -> list[str]:
        return [
            w.json["notification"]["kind"] for w in self.taken if w.json["notification"]["workflow_id"] == workflow_id
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
