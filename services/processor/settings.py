from pydantic import Field

from runtime.settings import ServiceSettings


class ProcessorSettings(ServiceSettings):
    seed: int | None = Field(default=None, alias="WF_SEED")
    transient_error_rate: float = Field(default=0.0, ge=0.0, le=1.0, alias="WF_PROCESSOR_TRANSIENT_ERROR_RATE")
    fatal_error_rate: float = Field(default=0.0, ge=0.0, le=1.0, alias="WF_PROCESSOR_FATAL_ERROR_RATE")
    slow_rate: float = Field(default=0.0, ge=0.0, le=1.0, alias="WF_PROCESSOR_SLOW_RATE")
    slow_s: float = Field(default=40.0, ge=0.0, alias="WF_PROCESSOR_SLOW_S")  # past the steps' default timeouts
    concurrency: int = Field(default=8, ge=1, alias="WF_PROCESSOR_CONCURRENCY")
    port: int = Field(default=8003, ge=0, le=65535, alias="WF_PROCESSOR_PORT")  # /metrics and /healthz
    # The steps it simulates, `<type>.<step>` comma separated: the shipped types' by default. A step a worker of a
    # team's own runs is left out (the broker lets one worker only take a step).
    steps: str = Field(
        default="approval.process,expense.validate,expense.pay",
        alias="WF_PROCESSOR_STEPS",
        pattern=r"^[a-z][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*(,[a-z][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*)*$",
    )

    @property
    def step_names(self) -> list[tuple[str, str]]:
        return [(name.split(".")[0], name.split(".")[1]) for name in self.steps.split(",")]
