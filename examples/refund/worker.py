"""The refund type's `check_refund` step, as a team writes it with the worker library (README: "Write your own
step"). Run it beside the system: NATS_URL is the `workers` line `make run` prints."""

import logging
import os

from pydantic import BaseModel
from wfworker import Job, NonRetryableError, Worker


class Refund(BaseModel):  # the type's input (its input_schema)
    order: str
    amount: float


class Check(BaseModel):  # the step's result (its result_schema): the routes read `result.refundable`
    refundable: bool
    reason: str


worker = Worker(
    os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
    name="refund-checks",
    prefix=os.environ.get("WF_PREFIX", "wf"),  # the system's subject prefix
    port=int(os.environ.get("WORKER_PORT", "8010")),  # /metrics and /healthz
    connect_options={"inbox_prefix": "_INBOX_worker"},  # the replies the `worker` NATS user may read
)


@worker.step("refund", "check_refund")
async def check_refund(job: Job[Refund]) -> Check:
    if job.input.order.startswith("TEST-"):
        raise NonRetryableError(f"{job.input.order} is a test order")  # the step fails at once: no retry helps
    if job.input.amount > 500:
        return Check(refundable=False, reason=f"{job.input.amount} is over the 500 a refund may be")
    return Check(refundable=True, reason="within the limit")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    worker.run_forever()
