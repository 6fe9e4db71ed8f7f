from pydantic import Field

from runtime.settings import ServiceSettings
from services.orchestrator.retention import RETENTION_EVERY_S
from services.orchestrator.sweeper import SWEEP_EVERY_S


class OrchestratorSettings(ServiceSettings):
    seed: int | None = Field(default=None, alias="WF_SEED")
    send_failure_rate: float = Field(default=0.25, ge=0.0, le=1.0, alias="WF_SEND_FAILURE_RATE")
    port: int = Field(default=8002, ge=0, le=65535, alias="WF_ORCHESTRATOR_PORT")  # /metrics and /healthz
    # How often the commands stream is searched for messages its consumer passed over (services/orchestrator/sweeper.py)
    sweep_every_s: float = Field(default=SWEEP_EVERY_S, gt=0, alias="WF_SWEEP_EVERY_S")
    # Unset: workflows stay for good. Set: ended ones unchanged for this many days are exported and removed
    # (services/orchestrator/retention.py), checked every `retention_every_s`.
    retention_days: float | None = Field(default=None, gt=0, alias="WF_RETENTION_DAYS")
    retention_every_s: float = Field(default=RETENTION_EVERY_S, gt=0, alias="WF_RETENTION_EVERY_S")
