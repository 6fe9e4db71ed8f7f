from pydantic import AnyHttpUrl, Field

from runtime.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    # The payment provider's API: POST {url}/payments {"amount", "reference", "payee"} under an Idempotency-Key,
    # answered with {"id", "amount"} (the same answer for the same key: the provider pays a key once).
    payments_url: AnyHttpUrl = Field(alias="WF_PAYMENTS_URL")
    request_timeout_s: float = Field(default=20.0, gt=0, alias="WF_PAYMENTS_TIMEOUT_S")  # within the step's 30 s
    concurrency: int = Field(default=8, ge=1, alias="WF_PAYMENTS_CONCURRENCY")
    port: int = Field(default=8007, ge=0, le=65535, alias="WF_PAYMENTS_PORT")  # /metrics and /healthz
