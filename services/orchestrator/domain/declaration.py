"""The language a workflow type is declared in: a `transitions` machine, and for each state a step the engine runs on
entry, a wait for clients' commands, or an end. The engine (engine.py) knows nothing of any particular type."""

import reprlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from transitions import Machine

from contracts.auth import COMMAND_ROLES
from contracts.types import StateInfo, TransitionInfo, WorkflowTypeInfo


class IllegalTransition(Exception):
    pass


Seconds = float | Callable[[Mapping[str, Any]], float] | None  # fixed, or read off the context of an instance


# The longest duration an input may set: a deadline this far ahead still fits a datetime (ten years).
MAX_INPUT_SECONDS = 10 * 365 * 24 * 3600


@dataclass(frozen=True)
class FromInput:
    """A duration each instance may set in its input (e.g. a tighter deadline), else `default`."""

    key: str
    default: float

    def __call__(self, context: Mapping[str, Any]) -> float:
        return float(context["input"].get(self.key, self.default))

    def problem(self, given: Mapping[str, Any]) -> str | None:
        """Why this input cannot set the duration (None when it can, or leaves it to the default)."""
        value = given.get(self.key, self.default)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_INPUT_SECONDS:
            return None
        return f"input.{self.key}: seconds from 0 to {MAX_INPUT_SECONDS} are needed, not {reprlib.repr(value)}"


def from_input(key: str, default: float) -> FromInput:
    return FromInput(key, default)


def seconds(value: Seconds, context: Mapping[str, Any]) -> float | None:
    return value(context) if callable(value) else value


# ------------------------------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class RetryPolicy:
    max_tries: int = 3
    initial_delay_s: float = 1.0
    backoff: Literal["constant", "linear", "exponential"] = "exponential"
    multiplier: float = 2.0  # for exponential backoff
    max_delay_s: float = 60.0

    def delay_after(self, failed_try: int) -> float | None:
        """Seconds before the next try, or None when `failed_try` was the last one allowed."""
        if failed_try >= self.max_tries:
            return None
        match self.backoff:
            case "constant":
                delay = self.initial_delay_s
            case "linear":
                delay = self.initial_delay_s * failed_try
            case "exponential":
                delay = self.initial_delay_s * self.multiplier ** (failed_try - 1)
        return min(delay, self.max_delay_s)


@dataclass(frozen=True)
class Route:
    """Where a step's result leads: the trigger to fire, and a note for the log (e.g. why it failed)."""

    trigger: str
    note: str = ""


@dataclass(frozen=True)
class Step:
    """Run `name` on the processors when the state is entered; `route` reads the result (and the context of recorded
    results) and names the trigger to fire. A try that fails is retried per `retry`, unless its error type is in
    `non_retryable`; a try with no result after `timeout_s` is abandoned (its late result is ignored) and retried.
    When the step gives up, `on_failure` fires."""

    name: str
    route: Callable[[Mapping[str, Any], Mapping[str, Any]], Route]
    retry: RetryPolicy = RetryPolicy()
    timeout_s: Seconds = 30.0
    non_retryable: frozenset[str] = frozenset()
    on_failure: str = "fail"


# ------------------------------------------------------------------------------------------------------------- waits


@dataclass(frozen=True)
class Input:
    """A client's command as a waiting state sees it, with what the state has taken so far in this visit."""

    kind: str
    actor: str | None
    note: str
    taken: tuple[Mapping[str, Any], ...]  # earlier inputs recorded in this visit: {"command_kind", "actor", "note"}
    context: Mapping[str, Any]


@dataclass(frozen=True)
class Move:
    trigger: str


@dataclass(frozen=True)
class Stay:
    """Take the input without moving (it is recorded, e.g. as one vote of a quorum)."""

    note: str = ""


@dataclass(frozen=True)
class Refuse:
    reason: str


Handler = Callable[[Input], Move | Stay | Refuse]


def _outsider(given: Input, actors: Collection[str]) -> Refuse | None:
    if given.actor in actors:
        return None
    who = given.actor or "an anonymous actor"
    return Refuse(f"{who} may not {given.kind} here (only {', '.join(sorted(actors))})")


def move(trigger: str) -> Handler:
    return lambda _: Move(trigger)


@dataclass(frozen=True)
class Only:
    """Accept the command from these actors only."""

    actors: frozenset[str]
    then: Handler

    def __call__(self, given: Input) -> Move | Stay | Refuse:
        return _outsider(given, self.actors) or self.then(given)

    def who_may_act(self, kind: str, taken: tuple[Mapping[str, Any], ...]) -> frozenset[str]:
        return self.actors


@dataclass(frozen=True)
class Quorum:
    """Move once `needed` distinct actors among `actors` sent the command; the same actor twice counts once."""

    actors: frozenset[str]
    needed: int
    trigger: str

    def __call__(self, given: Input) -> Move | Stay | Refuse:
        if refused := _outsider(given, self.actors):
            return refused
        already = _sent(given.kind, given.taken)
        if given.actor in already:
            return Refuse(f"{given.actor} has already sent {given.kind}; it counts once")
        if len(already) + 1 >= self.needed:
            return Move(self.trigger)
        return Stay(f"{len(already) + 1} of {self.needed}")

    def who_may_act(self, kind: str, taken: tuple[Mapping[str, Any], ...]) -> frozenset[str]:
        """The members who have not sent the command yet."""
        return self.actors - _sent(kind, taken)


def _sent(kind: str, taken: tuple[Mapping[str, Any], ...]) -> set[str]:
    return {i["actor"] for i in taken if i["command_kind"] == kind}


def only(actors: Collection[str], then: Handler) -> Handler:
    return Only(frozenset(actors), then)


def quorum(actors: Collection[str], needed: int, trigger: str) -> Handler:
    return Quorum(frozenset(actors), needed, trigger)


def who_may_act(handler: Handler, kind: str, taken: tuple[Mapping[str, Any], ...]) -> frozenset[str] | None:
    """The actors the handler takes the command from now; None when it takes it from anyone the API lets send it."""
    return handler.who_may_act(kind, taken) if isinstance(handler, Only | Quorum) else None


@dataclass(frozen=True)
class Wait:
    """Wait for clients' commands: `accepts` maps a command kind to its handler. With a `deadline_s`, `on_deadline`
    fires when it passes first, and who it waits for is reminded `remind_before_s` before it (the notifier)."""

    accepts: Mapping[str, Handler]
    deadline_s: Seconds = None
    on_deadline: str | None = None
    remind_before_s: Seconds = None


@dataclass(frozen=True)
class End:
    succeeded: bool = True


# ------------------------------------------------------------------------------------------------ search fields

MAX_SEARCH_TEXT = 200  # characters of a text field kept for searching
# What a search field may not be called: the filters every workflow has (contracts/index.py's columns).
GENERIC_FILTERS = frozenset(
    {
        "id",
        "type",
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


@dataclass(frozen=True)
class SearchField:
    """A value of each instance that people find and sort it by, read off its context at `path`: ("input", "amount")
    from what it was created with, ("process", "output") from the result of its step `process`."""

    kind: Literal["number", "text"]
    path: tuple[str, ...]

    def read(self, context: Mapping[str, Any]) -> float | str | None:
        value: Any = context
        for key in self.path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if self.kind == "number":
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        return value[:MAX_SEARCH_TEXT] if isinstance(value, str) else None


def number(*path: str) -> SearchField:
    return SearchField("number", path)


def text(*path: str) -> SearchField:
    return SearchField("text", path)


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
}


@dataclass(frozen=True)
class WorkflowType:
    name: str
    title: str
    initial: str
    states: Mapping[str, Step | Wait | End]
    transitions: list[dict[str, str]]  # in `transitions`' own format: trigger, source, dest
    search_fields: Mapping[str, SearchField] = field(default_factory=dict)  # by name: what the API filters on
    next_states: Mapping[tuple[str, str], str] = field(init=False, repr=False, compare=False)  # (state, trigger)

    def __post_init__(self) -> None:
        # The machine is used as a transition table, with no model objects, so folding stays a pure function. Its
        # table is read out once: every event folded looks a transition up.
        machine = Machine(
            model=None,
            states=list(self.states),
            transitions=self.transitions,
            initial=self.initial,
            auto_transitions=False,
        )
        table = {
            (source, trigger): found[0].dest
            for trigger, event in machine.events.items()
            for source, found in event.transitions.items()
            if found
        }
        object.__setattr__(self, "next_states", table)
        for name, spec in self.states.items():
            if isinstance(spec, Wait) and (spec.deadline_s is None) != (spec.on_deadline is None):
                raise IllegalTransition(f"{self.name}: '{name}' needs both a deadline and the trigger it fires")
            for trigger in self._triggers_of(spec):
                self.next_state(name, trigger)  # a declaration naming a trigger its machine lacks fails at import
        for name in self.search_fields:
            if not name.isidentifier() or name in GENERIC_FILTERS:
                raise IllegalTransition(f"{self.name}: a search field may not be called '{name}'")

    @staticmethod
    def _triggers_of(spec: Step | Wait | End) -> list[str]:
        if isinstance(spec, Step):
            return [spec.on_failure]
        if isinstance(spec, Wait):
            return [spec.on_deadline] if spec.on_deadline else []
        return []

    def kind(self, state: str) -> StateKind:
        match self.states[state]:
            case Step():
                return StateKind.STEP
            case Wait():
                return StateKind.WAIT
            case End(succeeded=succeeded):
                return StateKind.SUCCEEDED if succeeded else StateKind.FAILED

    def next_state(self, state: str | None, trigger: str) -> str:
        if state is None or (dest := self.next_states.get((state, trigger))) is None:
            raise IllegalTransition(f"{self.name}: '{trigger}' cannot happen in state '{state}'")
        return dest

    def input_problems(self, given: Mapping[str, Any]) -> list[str]:
        """What in an instance's input this type cannot use: a duration it reads from there that is not one."""
        durations = [spec.timeout_s for spec in self.states.values() if isinstance(spec, Step)]
        durations += [
            d
            for spec in self.states.values()
            if isinstance(spec, Wait)
            for d in (spec.deadline_s, spec.remind_before_s)
        ]
        problems = (duration.problem(given) for duration in durations if isinstance(duration, FromInput))
        return list(dict.fromkeys(problem for problem in problems if problem))

    def search_values(self, context: Mapping[str, Any]) -> dict[str, float | str]:
        """The instance's search fields that its context has a value for."""
        read = {name: searched.read(context) for name, searched in self.search_fields.items()}
        return {name: value for name, value in read.items() if value is not None}

    def waiting_for(self, state: str, taken: tuple[Mapping[str, Any], ...]) -> tuple[str, ...]:
        """Who may answer the state now: the actors its handlers name (a quorum's members who have not voted yet), or
        `role:<role>` where a command is taken from anyone holding the role it needs. Empty unless it waits."""
        spec = self.states[state]
        if not isinstance(spec, Wait):
            return ()
        who: set[str] = set()
        for kind, handler in spec.accepts.items():
            named = who_may_act(handler, kind, taken)
            who |= named if named is not None else {f"role:{role}" for role in COMMAND_ROLES.get(kind, ())}
        return tuple(sorted(who))

    def accepted_commands(self, state: str) -> list[str]:
        spec = self.states[state]
        return list(spec.accepts) if isinstance(spec, Wait) else []

    def describe(self) -> WorkflowTypeInfo:
        """What clients need to draw the machine and offer the commands each state accepts."""
        states = []
        for name in self.states:
            kind = self.kind(name)
            lifecycle = [command for command, rule in LIFECYCLE.items() if PHASE_OF_KIND[kind] in rule.applies_in]
            accepts = self.accepted_commands(name) + lifecycle
            waits_for = list(self.waiting_for(name, ()))
            states.append(StateInfo(name=name, kind=kind.value, accepts=accepts, waits_for=waits_for))
        transitions = [
            TransitionInfo(trigger=t["trigger"], source=t["source"], dest=t["dest"]) for t in self.transitions
        ]
        return WorkflowTypeInfo(
            name=self.name,
            title=self.title,
            initial=self.initial,
            states=states,
            transitions=transitions,
            search_fields={name: searched.kind for name, searched in self.search_fields.items()},
        )
