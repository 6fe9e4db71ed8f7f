from pydantic import Field

from contracts.settings import ServiceSettings


class OrchestratorSettings(ServiceSettings):
    seed: int | None = Field(None, validation_alias="WF_SEED")
    send_failure_rate: float = Field(0.25, ge=0.0, le=1.0, validation_alias="WF_SEND_FAILURE_RATE")
    port: int = Field(8002, ge=0, le=65535, validation_alias="WF_ORCHESTRATOR_PORT")  # /metrics and /healthz
