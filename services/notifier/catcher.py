"""`python -m services.notifier.catcher`: a local receiver for what the notifier sends, for trying it out on `make run`.
It takes e-mail over SMTP (aiosmtpd, on 127.0.0.1:1025: the notifier's default WF_SMTP_PORT) and webhooks over HTTP
(on 127.0.0.1:8025, any path), and prints each one with its links. Given a webhook subscription's secret (`--secret`),
it checks each webhook's signature as a receiver should (README, "Verifying a webhook")."""

import argparse
import email
import email.policy
import hashlib
import hmac
import json
import time

import uvicorn
from aiosmtpd.controller import Controller

TOLERANCE_S = 300  # an older signature's timestamp is refused: a replay


def signature_is_valid(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """Wf-Signature is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


class PrintedMail:
    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = message.get_body(("plain",))
        print(
            f"\n--- e-mail to {message['To']}: {message['Subject']}\n{body.get_content() if body else ''}", flush=True
        )
        return "250 OK"


class WebhookCatcher:
    """An ASGI app that takes webhooks: keeps each Idempotency-Key's first delivery (acting once per key, as a
    receiver should), counts the repeats, answers 503 while `down`, and with a `secret` refuses (401) a bad
    signature. `echo` prints each one taken."""

    def __init__(self, secret: str = "", echo: bool = False) -> None:
        self.secret, self.echo = secret, echo
        self.down = False
        self.taken: dict[str, tuple[dict[str, str], bytes]] = {}  # by key, in the order first taken
        self.calls = self.repeats = self.refused = 0

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
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        status = self._take(headers, body)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"not taken"})

    def _take(self, headers: dict[str, str], body: bytes) -> int:
        self.calls += 1
        if self.down:
            return 503
        if self.secret and not signature_is_valid(self.secret, headers.get("wf-signature", ""), body):
            self.refused += 1
            if self.echo:
                print("\n--- webhook with a bad signature: refused", flush=True)
            return 401
        key = headers.get("idempotency-key", "")
        if key in self.taken:
            self.repeats += 1
            return 200
        self.taken[key] = (headers, body)
        if self.echo:
            print(f"\n--- webhook {key}{' (signature valid)' if self.secret else ''}", flush=True)
            try:
                print(json.dumps(json.loads(body), indent=2), flush=True)
            except ValueError:
                print(body.decode(errors="replace"), flush=True)
        return 200

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.taken.values()]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.notifier.catcher", description=__doc__)
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--http-port", type=int, default=8025)
    parser.add_argument("--secret", default="", help="a webhook subscription's secret: check each signature")
    arguments = parser.parse_args()
    mail = Controller(PrintedMail(), hostname="127.0.0.1", port=arguments.smtp_port)
    mail.start()
    print(f"catching e-mail on 127.0.0.1:{arguments.smtp_port}, webhooks on http://127.0.0.1:{arguments.http_port}/")
    try:
        uvicorn.run(
            WebhookCatcher(arguments.secret, echo=True), host="127.0.0.1", port=arguments.http_port, log_level="warning"
        )
    finally:
        mail.stop()


if __name__ == "__main__":
    main()
