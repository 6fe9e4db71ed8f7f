"""The language a workflow type is declared in: a `transitions` machine, and for each state a step the engine runs on
entry, a wait for clients' commands, or an end. The engine (engine.py) knows nothing of any particular type."""

import reprlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from transitions import Machine

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


def only(actors: Collection[str], then: Handler) -> Handler:
    """Accept the command from these actors only."""

    def handle(given: Input) -> Move | Stay | Refuse:
        return _outsider(given, actors) or then(given)

    return handle


def quorum(actors: Collection[str], needed: int, trigger: str) -> Handler:
    """Move once `needed` distinct actors among `actors` sent the command; the same actor twice counts once."""

    def handle(given: Input) -> Move | Stay | Refuse:
        if refused := _outsider(given, actors):
            return refused
        already = {i["actor"] for i in given.taken if i["command_kind"] == given.kind}
        if given.actor in already:
            return Refuse(f"{given.actor} has already sent {given.kind}; it counts once")
        if len(already) + 1 >= needed:
            return Move(trigger)
        return Stay(f"{len(already) + 1} of {needed}")

    return handle


@dataclass(frozen=True)
class Wait:
    """Wait for clients' commands: `accepts` maps a command kind to its handler. With a `deadline_s`, `on_deadline`
    fires when it passes first."""

    accepts: Mapping[str, Handler]
    deadline_s: Seconds = None
    on_deadline: str | None = None


@dataclass(frozen=True)
class End:
    succeeded: bool = True


# ------------------------------------------------------------------------------------------------------- a type


class StateKind(StrEnum):
    WAIT = "wait"
    STEP = "step"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class WorkflowType:
    name: str
    title: str
    initial: str
    states: Mapping[str, Step | Wait | End]
    transitions: list[dict[str, str]]  # in `transitions`' own format: trigger, source, dest
    next_states: Mapping[tuple[str, str], str] = field(init=False, repr=False, compare=False)  # (state, trigger)

    def __post_init__(self) -> None:
        # The machine is used as a transition table, with no model objects, so folding stays a pure function. Its
        # table is read out once: every event folded looks a transition up.
        machine = Machine(model=None, states=list(self.states), transitions=self.transitions, initial=self.initial,
                          auto_transitions=False)
        table = {(source, trigger): found[0].dest
                 for trigger, event in machine.events.items() for source, found in event.transitions.items() if found}
        object.__setattr__(self, "next_states", table)
        for name, spec in self.states.items():
            if isinstance(spec, Wait) and (spec.deadline_s is None) != (spec.on_deadline is None):
                raise IllegalTransition(f"{self.name}: '{name}' needs both a deadline and the trigger it fires")
            for trigger in self._triggers_of(spec):
                self.next_state(name, trigger)  # a declaration naming a trigger its machine lacks fails at import

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
        if (dest := self.next_states.get((state, trigger))) is None:
            raise IllegalTransition(f"{self.name}: '{trigger}' cannot happen in state '{state}'")
        return dest

    def input_problems(self, given: Mapping[str, Any]) -> list[str]:
        """What in an instance's input this type cannot use: a duration it reads from there that is not one."""
        durations = [spec.timeout_s if isinstance(spec, Step) else spec.deadline_s
                     for spec in self.states.values() if isinstance(spec, Step | Wait)]
        problems = (duration.problem(given) for duration in durations if isinstance(duration, FromInput))
        return list(dict.fromkeys(problem for problem in problems if problem))

    def accepted_commands(self, state: str) -> list[str]:
        spec = self.states[state]
        return list(spec.accepts) if isinstance(spec, Wait) else []

    def describe(self) -> WorkflowTypeInfo:
        """What clients need to draw the machine and offer the commands each state accepts."""
        states = []
        for name in self.states:
            kind = self.kind(name)
            # What the engine itself accepts, whatever the type: stopping a live workflow, retrying or archiving an
            # ended one.
            lifecycle = ["cancel", "terminate"] if kind in (StateKind.WAIT, StateKind.STEP) else ["archive"]
            lifecycle += ["retry"] if kind is StateKind.FAILED else []
            states.append(StateInfo(name=name, kind=kind.value, accepts=self.accepted_commands(name) + lifecycle))
        transitions = [TransitionInfo(trigger=t["trigger"], source=t["source"], dest=t["dest"]) for t in self.transitions]
        return WorkflowTypeInfo(name=self.name, title=self.title, initial=self.initial, states=states,
                                transitions=transitions)
