"""The expense's `pay` step: a payment through the provider's HTTP API, under the job's idempotency key, so a try run
again (a retry, a redelivery, a worker killed mid-call) never pays twice: the provider answers a key it has seen with
the payment it made for it."""

import httpx
from pydantic import BaseModel, ConfigDict, Field
from wfworker import Job, NonRetryableError


class ExpenseInput(BaseModel):
    model_config = ConfigDict(extra="allow")  # the expense's other fields are not the payment's business

    amount: float = Field(ge=0)
    requester: str = ""


class Payment(BaseModel):
    payment_id: str
    amount: float


class PaymentRefused(NonRetryableError):
    """The provider refused the payment itself (a 4xx): trying again cannot help."""


class ProviderUnavailable(Exception):
    """The provider could not answer now (a 5xx, 409 or 429): the step's retry policy tries again."""


class Payments:
    def __init__(self, provider: httpx.AsyncClient) -> None:
        self.provider = provider

    async def pay(self, job: Job[ExpenseInput]) -> Payment:
        order = {"amount": job.input.amount, "reference": job.workflow_id, "payee": job.input.requester}
        answer = await self.provider.post("/payments", json=order, headers={"Idempotency-Key": job.idempotency_key})
        if answer.status_code in (409, 429) or answer.status_code >= 500:
            raise ProviderUnavailable(f"the payment provider answered {answer.status_code}")
        if answer.is_error:
            raise PaymentRefused(f"the payment provider refused it ({answer.status_code}): {answer.text[:500]}")
        paid = answer.json()
        return Payment(payment_id=paid["id"], amount=paid["amount"])
