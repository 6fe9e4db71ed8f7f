"""`python -m services.payments.sandbox`: a stand-in payment provider for a machine without one, which `make run` starts
when WF_PAYMENTS_URL names no provider. It speaks the provider API the payments worker calls (settings.py): it pays
each Idempotency-Key once, answers a key it has seen with that payment, and refuses an order without a key (400) or
without an amount (422). Nothing is paid for real: the payments live in its memory and are printed as they are made.
It listens on 127.0.0.1, port WF_PAYMENTS_SANDBOX_PORT (8026)."""

import os
import uuid

from litestar import Litestar, Request, Response, post
from litestar.exceptions import SerializationException

from runtime.observability import serve

DEFAULT_PORT = 8026


class PaymentSandbox:
    def __init__(self) -> None:
        self.payments: dict[str, dict] = {}  # by Idempotency-Key

    async def pay(self, key: str | None, order: object) -> Response:
        if not key:
            return Response({"error": "an order needs an Idempotency-Key header"}, status_code=400)
        if key in self.payments:
            return Response(self.payments[key], status_code=200)
        if not isinstance(order, dict) or not _is_amount(order.get("amount")):
            return Response({"error": "an order needs an amount, a number from 0"}, status_code=422)
        payment = {"id": f"pay_{uuid.uuid4().hex[:12]}", "amount": order["amount"], "reference": order.get("reference"),
                   "payee": order.get("payee")}  # fmt: skip
        self.payments[key] = payment
        print(f"paid {payment['amount']} to {payment['payee'] or '?'} for {payment['reference']} ({key})", flush=True)
        return Response(payment, status_code=201)


def _is_amount(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def create_app(sandbox: PaymentSandbox) -> Litestar:
    @post("/payments")
    async def pay(request: Request) -> Response:
        try:
            order = await request.json()
        except SerializationException:  # not JSON
            order = None
        return await sandbox.pay(request.headers.get("idempotency-key"), order)

    return Litestar([pay])


if __name__ == "__main__":
    port = int(os.environ.get("WF_PAYMENTS_SANDBOX_PORT", DEFAULT_PORT))
    print(f"a payment sandbox on http://127.0.0.1:{port}/payments: nothing is paid for real", flush=True)
    serve(create_app(PaymentSandbox()), "127.0.0.1", port)  # a clean stop on SIGTERM, as the services
