"""A workflow type as data: the document a team writes (YAML or JSON), publishes with `wf types apply` or
`PUT /types/{name}`, and the orchestrator runs. Each publication is an immutable version in the `<prefix>_types`
bucket (key `<name>.<version>`); an instance runs on the version it was created with until it ends or is migrated.

Conditions and notes are CEL expressions (https://cel.dev) over `result` (the step's result), `input` (what the
instance was created with) and `context` (the input and every step's recorded result, by step name): never code. What
this module checks is the document's shape; what it means (reachable states, compiling expressions, ...) the
orchestrator checks when it is applied, and refuses it listing every problem."""

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from contracts.commands import Actor, Group
from contracts.types import WorkflowTypeInfo

TypeName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
StateName = Annotated[str, Field(min_length=1, max_length=100)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Trigger = Identifier
Expression = Annotated[str, Field(min_length=1, max_length=2000, description="a CEL expression")]
Version = Annotated[int, Field(ge=1)]
# The commands a waiting state may take from people; the lifecycle commands (cancel, ...) every state takes already.
WaitCommand = Literal["process", "approve", "reject"]
MAX_STATES = 500
MAX_SECONDS = 10 * 365 * 24 * 3600  # the longest duration: a deadline this far ahead still fits a datetime


class Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FromInput(Document):
    """A duration each instance may set in its input (e.g. a tighter deadline), else `default`."""

    input: Identifier
    default: Annotated[float, Field(ge=0, le=MAX_SECONDS)]


Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)] | FromInput


class RetryPolicy(Document):
    max_tries: Annotated[int, Field(ge=1, le=100)] = 3
    initial_delay_s: Annotated[float, Field(ge=0, le=86400)] = 1.0
    backoff: Literal["constant", "linear", "exponential"] = "exponential"
    multiplier: Annotated[float, Field(ge=1, le=10)] = 2.0  # for exponential backoff
    max_delay_s: Annotated[float, Field(ge=0, le=86400)] = 60.0


class Route(Document):
    """Where a step's result leads: the first route whose `when` holds (a route without one always does)."""

    when: Expression | None = None
    trigger: Trigger
    note: Expression | None = Field(default=None, description="a CEL expression giving the text the log records")


class StepState(Document):
    """Run the job `step` on the workers when the state is entered; its result is recorded under that name. A try that
    fails is retried per `retry` unless its error type is `non_retryable`; a try with no result after `timeout_s` is
    abandoned and retried. When the step gives up, `on_failure` fires."""

    kind: Literal["step"] = "step"
    step: Trigger
    routes: Annotated[list[Route], Field(min_length=1)]
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: Seconds | None = 30.0
    non_retryable: list[str] = []
    on_failure: Trigger = "fail"
    result_schema: dict[str, Any] | None = Field(default=None, description="a JSON Schema every result must fit")


class Who(Document):
    """Who may send a command: anyone named, a member of one of the groups, or the person a field of the input names
    (`input: manager`). A wait with no `who` takes the command from anyone holding the role it needs."""

    people: list[Actor] = []
    groups: list[Group] = []
    input: Identifier | None = None


class Accept(Document):
    """A command the wait takes: it fires `trigger`, once `quorum` distinct people allowed by `who` have sent it."""

    trigger: Trigger
    who: Who | None = None
    quorum: Annotated[int, Field(ge=2, le=100)] | None = None


class Deadline(Document):
    """When the wait has lasted `after_s`, `fires` fires; who it waits for is reminded `remind_before_s` before."""

    after_s: Seconds
    fires: Trigger
    remind_before_s: Seconds | None = None


class WaitState(Document):
    kind: Literal["wait"] = "wait"
    accepts: dict[WaitCommand, Accept] = {}
    deadline: Deadline | None = None


class EndState(Document):
    kind: Literal["end"] = "end"
    succeeded: bool = True


State = Annotated[StepState | WaitState | EndState, Field(discriminator="kind")]


class Transition(Document):
    trigger: Trigger
    source: StateName
    dest: StateName


class SearchField(Document):
    """A value of each instance people find and sort it by, read off its context at `path`: ["input", "amount"] from
    what it was created with, ["process", "output"] from the result of its step `process`."""

    kind: Literal["number", "text"]
    path: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=10)]


class TypeDefinition(Document):
    name: TypeName
    title: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=5000)] = ""
    initial: StateName
    states: dict[StateName, State]  # 1 to MAX_STATES
    transitions: Annotated[list[Transition], Field(max_length=5000)]
    search_fields: dict[str, SearchField] = {}
    input_schema: dict[str, Any] | None = Field(default=None, description="a JSON Schema every instance's input fits")

    @field_validator("states")
    @classmethod
    def _some_states(cls, states: dict[str, Any]) -> dict[str, Any]:
        # Checked here rather than by Field bounds, which OpenAPI generators read as an array's.
        if not 1 <= len(states) <= MAX_STATES:
            raise ValueError(f"a type has 1 to {MAX_STATES} states")
        return states


class PublishedType(BaseModel):
    """One version of a type as the bucket keeps it: the document, what clients draw from it, and its publication."""

    model_config = ConfigDict(frozen=True)

    version: Version
    definition: TypeDefinition
    info: WorkflowTypeInfo
    published_at: AwareDatetime
    published_by: str
    changes: list[str] = []  # what changed against the version before it


class TypeVersionSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: Version
    published_at: AwareDatetime
    published_by: str
    changes: list[str]


# ------------------------------------------------------------------------------ applying a version, over NATS


class ApplyType(BaseModel):
    """A request to publish a definition, answered by the orchestrator that owns the types (`types_apply_subject`)."""

    model_config = ConfigDict(frozen=True)

    definition: dict[str, Any]  # checked by the orchestrator, which names every problem
    published_by: str


class TypeApplied(BaseModel):
    model_config = ConfigDict(frozen=True)

    outcome: Literal["published", "unchanged", "refused"]
    version: int | None = None  # the version published, or the latest one when unchanged
    changes: list[str] = []
    problems: list[str] = []


def version_key(name: str, version: int) -> str:
    return f"{name}.{version}"


def parse_version_key(key: str) -> tuple[str, int] | None:
    name, _, version = key.rpartition(".")
    return (name, int(version)) if name and version.isdigit() else None
