"""How a workflow type describes itself to clients: its machine, and what each state accepts. The orchestrator
publishes one per type to the `<prefix>_types` KV bucket (key = type name); the API lists them and the UI draws the
diagram and enables buttons from them, so a new type needs no client change."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

StateKindName = Literal["wait", "step", "succeeded", "failed", "cancelled"]


class StateInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: StateKindName
    accepts: list[str]  # command kinds a client may send in this state (e.g. ["approve", "reject", "cancel"])
    # Who may answer it when it is entered: names, "group:<group>", "role:<role>", or "input:<field>" for the person
    # an instance's input names there.
    waits_for: list[str] = []


class TransitionInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    trigger: str
    source: str
    dest: str


class WorkflowTypeInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    title: str
    version: int = 1
    initial: str
    states: list[StateInfo]
    transitions: list[TransitionInfo]
    search_fields: dict[str, Literal["number", "text"]] = {}  # what `GET /workflows` filters and sorts on, by name
    input_schema: dict[str, Any] | None = None  # what an instance's input must fit (JSON Schema): the UI's create form
