"""Wiring: the expense's `pay` step on a worker of the worker library, paying through the provider's HTTP API."""

import httpx
from wfworker import Worker

from services.payments.pay import Payments
from services.payments.settings import PaymentsSettings


def create_app(settings: PaymentsSettings) -> Worker:
    # A team's worker: the `worker` NATS user (its inboxes).
    worker = settings.worker("payments", "worker", settings.concurrency, settings.port)
    provider = httpx.AsyncClient(base_url=str(settings.payments_url), timeout=settings.request_timeout_s)
    worker.add_step("expense", "pay", Payments(provider).pay)
    return worker
