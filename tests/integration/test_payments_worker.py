"""The expense's `pay` step run by the payments worker (services/payments, on the worker library) against a real HTTP
payment provider that records every call: retries, a redelivery after a worker killed mid-call, and a refusal each
pay exactly once, or not at all."""

import asyncio
import uuid
from dataclasses import dataclass, field

import pytest
from litestar import Litestar, Request, Response, post

from contracts.commands import ApproveWorkflow, CreateWorkflow, ProcessWorkflow
from tests.conftest import eventually
from tests.integration.driving import SEED, Driver, first_id
from tests.integration.serving import served
from tests.integration.test_notifications import passes_policy

pytestmark = pytest.mark.integration


@dataclass
class PaymentProvider:
    """Pays each Idempotency-Key once, at once, and answers a key it has seen with that payment. It can be made to
    answer 503 (before paying) the first `unavailable` times, to hold its answers until `answering` is set (after
    paying: the call a worker killed mid-call never hears back from), or to refuse amounts over `limit`."""

    calls: list[str] = field(default_factory=list)  # the key of each call, in order
    payments: dict[str, dict] = field(default_factory=dict)  # by key
    unavailable: int = 0
    limit: float = 10_000
    answering: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.answering.set()

    def app(self) -> Litestar:
        @post("/payments")
        async def pay(request: Request) -> Response:
            key, data = request.headers["idempotency-key"], await request.json()
            self.calls.append(key)
            if self.unavailable:
                self.unavailable -= 1
                return Response({"error": "try later"}, status_code=503)
            if data["amount"] > self.limit:
                return Response({"error": "over the limit"}, status_code=422)
            known = key in self.payments
            if not known:
                self.payments[key] = {"id": f"pay_{uuid.uuid4().hex[:12]}", "amount": data["amount"]}
            await self.answering.wait()
            return Response(self.payments[key], status_code=200 if known else 201)

        return Litestar([pay])


@pytest.fixture
async def provider():
    provider = PaymentProvider()
    async with served(provider.app(), ready=False) as address:
        yield provider, f"http://{address}"


@pytest.fixture
def start_payments(nats_url, topology, start_service, provider):
    settings = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0"}
    start_service("orchestrator", nats_url, topology, **settings)
    start_service("processor", nats_url, topology, WF_PROCESSOR_STEPS="approval.process,expense.validate", **settings)

    def start():
        return start_service("payments", nats_url, topology, WF_PAYMENTS_URL=provider[1], WF_PAYMENTS_PORT="0")

    return start


async def to_paying(driver: Driver, prefix: str, amount: float = 120) -> str:
    """An expense through its policy check, its manager and two of finance: at its `pay` step."""
    workflow_id = first_id(passes_policy, prefix)
    await driver.send(CreateWorkflow(workflow_id=workflow_id, workflow_type="expense", input={"amount": amount}))
    await driver.send(ProcessWorkflow(workflow_id=workflow_id))
    await driver.reaches(workflow_id, "Manager Approval")
    await driver.send(ApproveWorkflow(workflow_id=workflow_id, approver="mia", groups=["managers"]))
    await driver.reaches(workflow_id, "Finance Approval")
    for approver in ("fin-ann", "fin-bob"):
        await driver.send(ApproveWorkflow(workflow_id=workflow_id, approver=approver))
    return workflow_id


async def test_a_payment_the_provider_could_not_take_at_first_is_tried_again_and_paid_once(
    js, topology, start_payments, provider
):
    payment_provider, _ = provider
    payment_provider.unavailable = 1
    start_payments()
    driver = Driver(js, topology)
    workflow_id = await to_paying(driver, "retried")
    paid = await driver.reaches(workflow_id, "Paid", timeout_s=30)
    [(key, payment)] = payment_provider.payments.items()
    assert payment_provider.calls == [key, key] and key == f"{workflow_id}:pay:1"
    assert paid.context["pay"] == {"payment_id": payment["id"], "amount": 120}
    assert [event.type for event in await driver.events(workflow_id)].count("StepAttemptFailed") == 1


async def test_a_worker_killed_mid_call_pays_once_when_the_job_is_redelivered(js, topology, start_payments, provider):
    payment_provider, _ = provider
    payment_provider.answering.clear()  # it pays, then never answers that call
    worker = start_payments()
    driver = Driver(js, topology)
    workflow_id = await to_paying(driver, "killed")
    await eventually(lambda: payment_provider.calls, timeout_s=30)
    assert worker.stop(kill=True) == -9  # kill -9, mid-call: the job was neither answered nor acked
    payment_provider.answering.set()
    start_payments()  # another worker: the broker hands it the job once the ack wait is over
    paid = await driver.reaches(workflow_id, "Paid", timeout_s=40)
    [(key, payment)] = payment_provider.payments.items()
    assert payment_provider.calls == [key, key]  # the same key both times: one payment
    assert paid.context["pay"]["payment_id"] == payment["id"]


async def test_a_payment_the_provider_refuses_fails_the_step_at_once_with_its_reason(
    js, topology, start_payments, provider
):
    payment_provider, _ = provider
    payment_provider.limit = 100
    start_payments()
    driver = Driver(js, topology)
    workflow_id = await to_paying(driver, "refused", amount=120)
    failed = await driver.reaches(workflow_id, "Error", timeout_s=30)
    assert payment_provider.payments == {} and len(payment_provider.calls) == 1  # not tried again
    assert "refused it (422)" in (failed.error or "") and "over the limit" in (failed.error or "")
