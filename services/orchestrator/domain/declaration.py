"""A workflow type as the engine runs it: one version of a definition (contracts/definitions.py) compiled once, with
its transition table, its CEL programs and its schemas' validators. `problems_of` says everything wrong with a
definition; `WorkflowType.compile` refuses one with any. The engine (engine.py) knows nothing of any particular type."""

import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import cel
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError

from contracts.auth import COMMAND_ROLES
from contracts.definitions import (
    MAX_SECONDS,
    Accept,
    EndState,
    FromInput,
    RetryPolicy,
    Seconds,
    StepState,
    TypeDefinition,
    WaitState,
    Who,
)
from contracts.types import StateInfo, TransitionInfo, WorkflowTypeInfo


class IllegalTransition(Exception):
    pass


class InvalidDefinition(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UnknownTypeVersion(LookupError):
    """A version this replica has not loaded yet (just published elsewhere): the command is tried again later."""


def seconds(value: Seconds | None, context: Mapping[str, Any]) -> float | None:
    if isinstance(value, FromInput):
        return float(context["input"].get(value.input, value.default))
    return value


def delay_after(policy: RetryPolicy, failed_try: int) -> float | None:
    """Seconds before the next try, or None when `failed_try` was the last one allowed."""
    if failed_try >= policy.max_tries:
        return None
    match policy.backoff:
        case "constant":
            delay = policy.initial_delay_s
        case "linear":
            delay = policy.initial_delay_s * failed_try
        case "exponential":
            delay = policy.initial_delay_s * policy.multiplier ** (failed_try - 1)
    return min(delay, policy.max_delay_s)


# ------------------------------------------------------------------------------------------------- who may act


@dataclass(frozen=True)
class Actor:
    """Who sent a command, as the API or a raw client says: a name and the groups the token holder is in."""

    name: str | None
    groups: frozenset[str] = frozenset()


def named_by_input(who: Who, context: Mapping[str, Any]) -> str | None:
    named = context["input"].get(who.input) if who.input else None
    return named if isinstance(named, str) and named else None


def allows(who: Who, actor: Actor, context: Mapping[str, Any]) -> bool:
    return actor.name is not None and (
        actor.name in who.people
        or not actor.groups.isdisjoint(who.groups)
        or actor.name == named_by_input(who, context)
    )


def answerers(who: Who, context: Mapping[str, Any]) -> set[str]:
    """Who the wait is for, as `waiting_for` and the inbox name them: people, and "group:<group>"."""
    named = named_by_input(who, context)
    return {*who.people, *(f"group:{group}" for group in who.groups), *([named] if named else [])}


def describe_who(who: Who) -> str:
    parts = [*who.people, *(f"group {group}" for group in who.groups), *([f"input.{who.input}"] if who.input else [])]
    return ", ".join(parts) or "nobody"


# ------------------------------------------------------------------------------------------------------- a type


class StateKind(StrEnum):
    WAIT = "wait"
    STEP = "step"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Phase(StrEnum):
    """Where a workflow is in its life, whatever its type: what the lifecycle commands go by."""

    LIVE = "live"  # in a step or a wait
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # in an end state that is a failure (Errored)
    STOPPED = "stopped"  # ended by cancel or terminate, whatever its state


PHASE_OF_KIND = {StateKind.WAIT: Phase.LIVE, StateKind.STEP: Phase.LIVE}
PHASE_OF_KIND |= {StateKind.SUCCEEDED: Phase.SUCCEEDED, StateKind.FAILED: Phase.FAILED}
ENDED = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.STOPPED})


@dataclass(frozen=True)
class Lifecycle:
    """A command the engine takes for every type: the phases it applies in, and why it is refused elsewhere (None:
    because the workflow has ended)."""

    applies_in: frozenset[Phase]
    refused: str | None = None


# The lifecycle rules, one table: what `describe` offers in each state and what the engine decides and folds.
LIFECYCLE: Mapping[str, Lifecycle] = {
    "cancel": Lifecycle(frozenset({Phase.LIVE})),
    "terminate": Lifecycle(frozenset({Phase.LIVE})),
    "archive": Lifecycle(ENDED, refused="only an ended workflow can be archived"),
    "retry": Lifecycle(frozenset({Phase.FAILED}), refused="only a workflow that errored can be retried"),
    "migrate": Lifecycle(frozenset({Phase.LIVE})),
    "reassign": Lifecycle(frozenset({Phase.LIVE})),
}
# Lifecycle commands `describe` offers to clients in each state (migrate and reassign are operators' tools).
OFFERED = ("cancel", "terminate", "archive", "retry")

MAX_SEARCH_TEXT = 200  # characters of a text field kept for searching
# What a search field may not be called: the filters every workflow has (contracts/index.py's columns).
GENERIC_FILTERS = frozenset(
    {
        "id",
        "type",
        "type_version",
        "business_state",
        "infra_status",
        "archived",
        "created_at",
        "updated_at",
        "deadline_at",
        "created_after",
        "created_before",
        "updated_after",
        "updated_before",
        "waiting_for",
        "sort",
        "limit",
        "cursor",
    }
)
VARIABLES = {"result", "input", "context"}  # what an expression may read


def evaluate(program: cel.Program, variables: Mapping[str, Any]) -> Any:
    return program.execute(dict(variables))


@dataclass(frozen=True)
class WorkflowType:
    """One version of a type, compiled: what the engine reads a definition through."""

    definition: TypeDefinition
    version: int = 1
    next_states: Mapping[tuple[str, str], str] = field(init=False, repr=False, compare=False)  # (state, trigger)
    programs: Mapping[str, cel.Program] = field(init=False, repr=False, compare=False)  # by expression
    input_schema: Draft202012Validator | None = field(init=False, repr=False, compare=False)
    result_schemas: Mapping[str, Draft202012Validator] = field(init=False, repr=False, compare=False)  # by state

    @classmethod
    def compile(cls, definition: TypeDefinition, version: int = 1) -> "WorkflowType":
        if problems := problems_of(definition):
            raise InvalidDefinition(problems)
        return cls(definition, version)

    def __post_init__(self) -> None:
        definition = self.definition
        table = {(t.source, t.trigger): t.dest for t in definition.transitions}
        programs = {source: cel.compile(source) for source in expressions(definition)}
        schema = definition.input_schema
        results = {
            name: Draft202012Validator(spec.result_schema)
            for name, spec in definition.states.items()
            if isinstance(spec, StepState) and spec.result_schema is not None
        }
        object.__setattr__(self, "next_states", table)
        object.__setattr__(self, "programs", programs)
        object.__setattr__(self, "input_schema", Draft202012Validator(schema) if schema is not None else None)
        object.__setattr__(self, "result_schemas", results)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def initial(self) -> str:
        return self.definition.initial

    @property
    def states(self) -> Mapping[str, StepState | WaitState | EndState]:
        return self.definition.states

    def kind(self, state: str) -> StateKind:
        match self.states[state]:
            case StepState():
                return StateKind.STEP
            case WaitState():
                return StateKind.WAIT
            case EndState(succeeded=succeeded):
                return StateKind.SUCCEEDED if succeeded else StateKind.FAILED

    def next_state(self, state: str | None, trigger: str) -> str:
        if state is None or (dest := self.next_states.get((state, trigger))) is None:
            raise IllegalTransition(f"{self.name}: '{trigger}' cannot happen in state '{state}'")
        return dest

    def input_problems(self, given: Mapping[str, Any]) -> list[str]:
        """What in an instance's input this type cannot take: what its input schema refuses, and a duration it reads
        from there that is not one."""
        problems = [
            f"input{''.join(f'[{p!r}]' for p in error.absolute_path)}: {error.message}"
            for error in (self.input_schema.iter_errors(given) if self.input_schema else ())
        ]
        for duration in durations(self.definition):
            if isinstance(duration, FromInput):
                value = given.get(duration.input, duration.default)
                if not (isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_SECONDS):
                    problems.append(
                        f"input.{duration.input}: seconds from 0 to {MAX_SECONDS} are needed, not {reprlib.repr(value)}"
                    )
        return list(dict.fromkeys(problems))

    def result_problems(self, state: str, result: Mapping[str, Any]) -> list[str]:
        validator = self.result_schemas.get(state)
        return [f"result: {error.message}" for error in validator.iter_errors(result)] if validator else []

    def search_values(self, context: Mapping[str, Any]) -> dict[str, float | str]:
        """The instance's search fields that its context has a value for."""
        found: dict[str, float | str] = {}
        for name, searched in self.definition.search_fields.items():
            value: Any = context
            for key in searched.path:
                value = value.get(key) if isinstance(value, Mapping) else None
            if searched.kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
                found[name] = float(value)
            elif searched.kind == "text" and isinstance(value, str):
                found[name] = value[:MAX_SEARCH_TEXT]
        return found

    def route(self, state: str, result: Mapping[str, Any], context: Mapping[str, Any]) -> tuple[str, str]:
        """The trigger a step's result fires and the note the log records. An expression that cannot be evaluated
        (a result without the field it reads) raises ValueError, saying which."""
        spec = self.states[state]
        assert isinstance(spec, StepState)
        variables = {"result": result, "input": context["input"], "context": context}
        for route in spec.routes:
            try:
                if route.when is None or evaluate(self.programs[route.when], variables) is True:
                    note = evaluate(self.programs[route.note], variables) if route.note else ""
                    return route.trigger, str(note)
            # Whatever the evaluator raises (a field the result lacks is a KeyError) is the result's fault.
            except Exception as error:
                raise ValueError(f"the route '{route.trigger}' could not be evaluated: {error!r}") from error
        raise ValueError(f"no route of step '{spec.step}' fits the result")

    def waiting_for(
        self, state: str, taken: Iterable[Mapping[str, Any]], context: Mapping[str, Any], assignees: Iterable[str] = ()
    ) -> tuple[str, ...]:
        """Who may answer the state now: the people and groups its accepts name (a quorum's members who have not
        voted yet), its assignees once it was reassigned, or `role:<role>` where a command is taken from anyone
        holding the role it needs. Empty unless it waits."""
        spec = self.states[state]
        if not isinstance(spec, WaitState):
            return ()
        assignees = set(assignees)
        taken = list(taken)
        who: set[str] = set()
        for kind, accept in spec.accepts.items():
            if assignees:
                named = assignees
            elif accept.who is None:
                named = {f"role:{role}" for role in COMMAND_ROLES.get(kind, ())}
            else:
                named = answerers(accept.who, context)
            who |= named - {i["actor"] for i in taken if i["command_kind"] == kind} if accept.quorum else named
        return tuple(sorted(who))

    def described_waits(self, state: str) -> list[str]:
        """Who a state waits for as clients are told it, for every instance: as `waiting_for`, and "input:<field>" for
        the person an instance's input names there (the notifier reads it off each instance's input)."""
        spec = self.states[state]
        fields = {
            f"input:{accept.who.input}"
            for accept in (spec.accepts.values() if isinstance(spec, WaitState) else ())
            if accept.who and accept.who.input
        }
        return sorted({*self.waiting_for(state, (), {"input": {}}), *fields})

    def accepted_commands(self, state: str) -> list[str]:
        spec = self.states[state]
        return list(spec.accepts) if isinstance(spec, WaitState) else []

    def describe(self) -> WorkflowTypeInfo:
        """What clients need to draw the machine and offer the commands each state accepts."""
        states = []
        for name in self.states:
            kind = self.kind(name)
            lifecycle = [command for command in OFFERED if PHASE_OF_KIND[kind] in LIFECYCLE[command].applies_in]
            accepts = self.accepted_commands(name) + lifecycle
            waits_for = self.described_waits(name)
            states.append(StateInfo(name=name, kind=kind.value, accepts=accepts, waits_for=waits_for))
        definition = self.definition
        return WorkflowTypeInfo(
            name=definition.name,
            title=definition.title,
            version=self.version,
            initial=definition.initial,
            states=states,
            transitions=[TransitionInfo(**t.model_dump()) for t in definition.transitions],
            search_fields={name: searched.kind for name, searched in definition.search_fields.items()},
            input_schema=definition.input_schema,
        )


def durations(definition: TypeDefinition) -> list[Seconds | None]:
    found: list[Seconds | None] = []
    for spec in definition.states.values():
        if isinstance(spec, StepState):
            found.append(spec.timeout_s)
        elif isinstance(spec, WaitState) and spec.deadline:
            found += [spec.deadline.after_s, spec.deadline.remind_before_s]
    return found


def expressions(definition: TypeDefinition) -> list[str]:
    return [
        source
        for spec in definition.states.values()
        if isinstance(spec, StepState)
        for route in spec.routes
        for source in (route.when, route.note)
        if source is not None
    ]


def triggers_of(spec: StepState | WaitState | EndState) -> list[str]:
    """The triggers a state's declaration may fire: each needs a transition from it."""
    match spec:
        case StepState():
            return [route.trigger for route in spec.routes] + [spec.on_failure]
        case WaitState():
            return [accept.trigger for accept in spec.accepts.values()] + (
                [spec.deadline.fires] if spec.deadline else []
            )
        case EndState():
            return []


# ----------------------------------------------------------------------------------------------- checking one


def problems_of(definition: TypeDefinition) -> list[str]:
    """Everything wrong with a definition that its shape does not already refuse, each said once."""
    states, problems = definition.states, []
    if definition.initial not in states:
        problems.append(f"initial: '{definition.initial}' is not a state")
    seen: dict[tuple[str, str], str] = {}
    for t in definition.transitions:
        for end in ("source", "dest"):
            if getattr(t, end) not in states:
                problems.append(f"transition {t.trigger}: its {end} '{getattr(t, end)}' is not a state")
        if (t.source, t.trigger) in seen and seen[t.source, t.trigger] != t.dest:
            problems.append(f"transition {t.trigger}: from '{t.source}' it leads to two states")
        seen[t.source, t.trigger] = t.dest
    for name, spec in states.items():
        problems += _state_problems(definition, name, spec, seen)
    problems += _reach_problems(definition, seen)
    for name in definition.search_fields:
        if not name.isidentifier() or name in GENERIC_FILTERS:
            problems.append(f"search field '{name}': a search field may not be called so")
    if problem := _schema_problem(definition.input_schema):
        problems.append(f"input_schema: {problem}")
    return list(dict.fromkeys(problems))


def _schema_problem(schema: dict[str, Any] | None) -> str | None:
    try:
        Draft202012Validator.check_schema(schema or {})
    except SchemaError as error:
        return f"not a JSON Schema ({error.message})"
    return None


def _state_problems(definition: TypeDefinition, name: str, spec: Any, table: Mapping[tuple[str, str], str]) -> list:
    problems = []
    for trigger in triggers_of(spec):
        if (name, trigger) not in table:
            problems.append(f"state '{name}': it fires '{trigger}', but no transition leaves it on '{trigger}'")
    match spec:
        case EndState():
            if any(source == name for source, _ in table):
                problems.append(f"state '{name}': an end has no transition out")
        case StepState():
            problems += _step_problems(name, spec)
        case WaitState():
            problems += _wait_problems(name, spec)
    return problems


def _step_problems(name: str, step: StepState) -> list[str]:
    problems = []
    if step.routes[-1].when is not None:
        problems.append(f"state '{name}': its last route needs no `when`, so every result leads somewhere")
    for route in step.routes:
        for source in (route.when, route.note):
            if source is not None and (problem := _expression_problem(source)):
                problems.append(f"state '{name}', route '{route.trigger}': {problem}")
    if problem := _schema_problem(step.result_schema):
        problems.append(f"state '{name}': result_schema is {problem}")
    return problems


def _expression_problem(source: str) -> str | None:
    try:
        program = cel.compile(source)
    except ValueError as error:
        return f"the expression {source!r} does not parse ({str(error).splitlines()[0]})"
    if unknown := set(program.variables()) - VARIABLES:
        return f"the expression {source!r} reads {', '.join(sorted(unknown))} (only result, input and context)"
    return None


def _wait_problems(name: str, wait: WaitState) -> list[str]:
    problems = []
    if not wait.accepts and not wait.deadline:
        problems.append(f"state '{name}': it waits for nothing and has no deadline, so it never ends")
    for kind, accept in wait.accepts.items():
        problems += _accept_problems(name, kind, accept)
    deadline = wait.deadline
    if deadline and isinstance(deadline.after_s, float | int) and isinstance(deadline.remind_before_s, float | int):
        if deadline.remind_before_s >= deadline.after_s:
            problems.append(f"state '{name}': the reminder comes before the wait begins")
    return problems


def _accept_problems(name: str, kind: str, accept: Accept) -> list[str]:
    who, problems = accept.who, []
    if who is not None and not (who.people or who.groups or who.input):
        problems.append(f"state '{name}': nobody may {kind} (its `who` names no one)")
    if accept.quorum is not None:
        if who is None:
            problems.append(f"state '{name}': a quorum to {kind} needs a `who`")
        elif not (who.groups or who.input) and accept.quorum > len(set(who.people)):
            problems.append(
                f"state '{name}': a quorum of {accept.quorum} to {kind} among {len(set(who.people))} people "
                "can never be reached"
            )
    return problems


def _reach_problems(definition: TypeDefinition, table: Mapping[tuple[str, str], str]) -> list[str]:
    if definition.initial not in definition.states:
        return []
    reached, frontier = {definition.initial}, [definition.initial]
    while frontier:
        state = frontier.pop()
        for (source, _), dest in table.items():
            if source == state and dest not in reached and dest in definition.states:
                reached.add(dest)
                frontier.append(dest)
    problems = [
        f"state '{name}': it cannot be reached from '{definition.initial}'"
        for name in definition.states
        if name not in reached
    ]
    if not any(isinstance(definition.states[name], EndState) for name in reached):
        problems.append("no end state can be reached: no instance could ever finish")
    return problems


def parse_definition(raw: Any) -> tuple[TypeDefinition | None, list[str]]:
    """A definition from its document, or every problem found in it."""
    try:
        definition = TypeDefinition.model_validate(raw)
    except ValidationError as error:
        return None, [
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}" for e in error.errors(include_url=False)
        ]
    return definition, problems_of(definition)


def changes_between(old: TypeDefinition, new: TypeDefinition) -> list[str]:
    """What changed from one version to the next, a line each, for people to read before it is published."""
    found = [f"title: {old.title!r} → {new.title!r}"] if old.title != new.title else []
    if old.initial != new.initial:
        found.append(f"initial: '{old.initial}' → '{new.initial}'")
    for name in sorted(old.states.keys() - new.states.keys()):
        found.append(f"removed state '{name}'")
    for name in sorted(new.states.keys() - old.states.keys()):
        found.append(f"added state '{name}'")
    for name in sorted(old.states.keys() & new.states.keys()):
        if old.states[name] != new.states[name]:
            found.append(f"changed state '{name}'")
    before = {(t.trigger, t.source, t.dest) for t in old.transitions}
    after = {(t.trigger, t.source, t.dest) for t in new.transitions}
    found += [f"removed transition {t}: '{s}' → '{d}'" for t, s, d in sorted(before - after)]
    found += [f"added transition {t}: '{s}' → '{d}'" for t, s, d in sorted(after - before)]
    for part in ("search_fields", "input_schema", "description"):
        if getattr(old, part) != getattr(new, part):
            found.append(f"changed {part}")
    return found


class TypeVersions:
    """Every version of every type a replica has loaded: what the engine looks an instance's version up in. The
    orchestrator adds each version as it is published; versions are immutable, so one is never replaced."""

    def __init__(self, versions: Iterable[WorkflowType] = ()) -> None:
        self._versions: dict[tuple[str, int], WorkflowType] = {}
        self._latest: dict[str, WorkflowType] = {}
        for declared in versions:
            self.add(declared)

    def add(self, declared: WorkflowType) -> None:
        self._versions[declared.name, declared.version] = declared
        if declared.version > getattr(self._latest.get(declared.name), "version", 0):
            self._latest[declared.name] = declared

    def get(self, name: str, version: int) -> WorkflowType:
        if (found := self._versions.get((name, version))) is None:
            raise UnknownTypeVersion(f"version {version} of type '{name}' is not loaded")
        return found

    def has(self, name: str, version: int) -> bool:
        return (name, version) in self._versions

    def latest(self, name: str) -> WorkflowType | None:
        return self._latest.get(name)

    def names(self) -> list[str]:
        return sorted(self._latest)

    def highest_version(self) -> int:
        """The highest version number of any type loaded."""
        return max((declared.version for declared in self._latest.values()), default=0)
