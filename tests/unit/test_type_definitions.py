"""Type definitions as data: every kind of bad definition is refused naming its problem; the shipped documents and the
JSON Schema published for editors stay what the code says; a change between versions is listed."""

import copy
import json
from typing import Any

import pytest
import yaml

from contracts.definitions import TypeDefinition
from services.orchestrator.domain.declaration import WorkflowType, changes_between, parse_definition
from services.orchestrator.domain.types import SHIPPED_DEFINITIONS, SHIPPED_DOCUMENTS

SCHEMA_FILE = SHIPPED_DOCUMENTS / "definition.schema.json"


def good() -> dict[str, Any]:
    """A small sound definition: every case below breaks one thing of it."""
    return {
        "name": "leave",
        "title": "Leave",
        "initial": "Requested",
        "states": {
            "Requested": {"kind": "wait", "accepts": {"process": {"trigger": "check"}}},
            "Checking": {
                "kind": "step",
                "step": "check",
                "routes": [{"when": "result.output > 0.5", "trigger": "ok"}, {"trigger": "fail", "note": "'no'"}],
            },
            "Approving": {
                "kind": "wait",
                "accepts": {
                    "approve": {"trigger": "approve", "who": {"people": ["ann", "bob", "cy"]}, "quorum": 2},
                    "reject": {"trigger": "reject", "who": {"input": "manager", "groups": ["hr"]}},
                },
                "deadline": {"after_s": 3600, "fires": "expire", "remind_before_s": 600},
            },
            "Approved": {"kind": "end"},
            "Refused": {"kind": "end", "succeeded": False},
        },
        "transitions": [
            {"trigger": "check", "source": "Requested", "dest": "Checking"},
            {"trigger": "ok", "source": "Checking", "dest": "Approving"},
            {"trigger": "fail", "source": "Checking", "dest": "Refused"},
            {"trigger": "approve", "source": "Approving", "dest": "Approved"},
            {"trigger": "reject", "source": "Approving", "dest": "Refused"},
            {"trigger": "expire", "source": "Approving", "dest": "Refused"},
        ],
        "search_fields": {"days": {"kind": "number", "path": ["input", "days"]}},
        "input_schema": {"type": "object", "properties": {"days": {"type": "integer", "minimum": 1}}},
    }


def broken(change) -> dict[str, Any]:
    document = copy.deepcopy(good())
    change(document)
    return document


def states(document):
    return document["states"]


BAD = [
    ("the initial state is not a state", lambda d: d.update(initial="Nowhere"), "initial: 'Nowhere' is not a state"),
    (
        "a transition from a state that is not one",
        lambda d: d["transitions"].append({"trigger": "x", "source": "Ghost", "dest": "Approved"}),
        "its source 'Ghost' is not a state",
    ),
    (
        "a transition to a state that is not one",
        lambda d: d["transitions"].append({"trigger": "x", "source": "Approving", "dest": "Ghost"}),
        "its dest 'Ghost' is not a state",
    ),
    (
        "one trigger leading from one state to two",
        lambda d: d["transitions"].append({"trigger": "approve", "source": "Approving", "dest": "Refused"}),
        "from 'Approving' it leads to two states",
    ),
    (
        "an unreachable state",
        lambda d: states(d).update(Limbo={"kind": "end"}),
        "state 'Limbo': it cannot be reached from 'Requested'",
    ),
    (
        "a trigger no transition takes",
        lambda d: states(d)["Requested"]["accepts"].update(reject={"trigger": "drop"}),
        "it fires 'drop', but no transition leaves it on 'drop'",
    ),
    (
        "a wait nobody may answer",
        lambda d: states(d)["Approving"]["accepts"]["reject"].update(who={}),
        "nobody may reject",
    ),
    (
        "a wait for nothing, with no deadline",
        lambda d: states(d).update(Requested={"kind": "wait"}),
        "it waits for nothing and has no deadline",
    ),
    (
        "an expression that does not parse",
        lambda d: states(d)["Checking"]["routes"][0].update(when="result.output >"),
        "does not parse",
    ),
    (
        "an expression reading what it is not given",
        lambda d: states(d)["Checking"]["routes"][0].update(when="secrets.key == 1"),
        "reads secrets (only result, input and context)",
    ),
    (
        "a step whose last route has a condition",
        lambda d: states(d)["Checking"]["routes"][1].update(when="result.output <= 0.5"),
        "its last route needs no `when`",
    ),
    (
        "a quorum larger than the people named",
        lambda d: states(d)["Approving"]["accepts"]["approve"].update(quorum=4),
        "a quorum of 4 to approve among 3 people can never be reached",
    ),
    (
        "a quorum with no `who`",
        lambda d: states(d)["Approving"]["accepts"]["approve"].pop("who"),
        "a quorum to approve needs a `who`",
    ),
    (
        "a reminder after the deadline",
        lambda d: states(d)["Approving"]["deadline"].update(remind_before_s=7200),
        "the reminder comes before the wait begins",
    ),
    (
        "an end with a way out",
        lambda d: d["transitions"].append({"trigger": "reopen", "source": "Approved", "dest": "Approving"}),
        "state 'Approved': an end has no transition out",
    ),
    (
        "no end reachable",
        lambda d: d.update(
            states={"Requested": {"kind": "wait", "accepts": {"process": {"trigger": "loop"}}}},
            transitions=[{"trigger": "loop", "source": "Requested", "dest": "Requested"}],
            search_fields={},
        ),
        "no end state can be reached",
    ),
    (
        "a search field named as a generic filter",
        lambda d: d["search_fields"].update(created_at={"kind": "text", "path": ["input", "x"]}),
        "search field 'created_at': a search field may not be called so",
    ),
    (
        "an input schema that is not a JSON Schema",
        lambda d: d.update(input_schema={"type": "nonsense"}),
        "input_schema: not a JSON Schema",
    ),
    (
        "a result schema that is not a JSON Schema",
        lambda d: states(d)["Checking"].update(result_schema={"minimum": "zero"}),
        "result_schema is not a JSON Schema",
    ),
    (
        "a command a wait may not take",
        lambda d: states(d)["Requested"]["accepts"].update(cancel={"trigger": "check"}),
        "states.Requested.wait.accepts.cancel",
    ),
    ("an unknown field", lambda d: d.update(owner="me"), "owner: Extra inputs are not permitted"),
    (
        "a retry policy of no tries",
        lambda d: states(d)["Checking"].update(retry={"max_tries": 0}),
        "retry.max_tries: Input should be greater than or equal to 1",
    ),
    ("a name that cannot be a key", lambda d: d.update(name="Leave Type"), "name: String should match pattern"),
]


def test_the_good_definition_is_sound():
    definition, problems = parse_definition(good())
    assert problems == [] and definition is not None
    assert WorkflowType.compile(definition).kind("Checking").value == "step"


@pytest.mark.parametrize(("change", "problem"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_every_kind_of_bad_definition_is_refused_naming_its_problem(change, problem):
    definition, problems = parse_definition(broken(change))
    assert any(problem in found for found in problems), problems


def test_the_table_covers_at_least_fifteen_kinds_and_every_problem_of_a_definition_is_named_at_once():
    assert len(BAD) >= 15
    two = broken(lambda d: d.update(initial="Nowhere"))
    states(two)["Checking"]["routes"][0]["when"] = "result.output >"
    _, problems = parse_definition(two)
    assert any("initial" in p for p in problems) and any("does not parse" in p for p in problems), problems


@pytest.mark.parametrize("name", sorted(SHIPPED_DEFINITIONS))
def test_the_shipped_types_are_documents_that_read_back_as_they_are(name):
    document = yaml.safe_load((SHIPPED_DOCUMENTS / f"{name}.yaml").read_text())
    definition = TypeDefinition.model_validate(document)
    assert parse_definition(definition.model_dump(mode="json")) == (definition, [])


def test_the_published_json_schema_is_the_documents_own():
    """types/definition.schema.json is what editors check a document against (`make types-schema` writes it)."""
    assert json.loads(SCHEMA_FILE.read_text()) == TypeDefinition.model_json_schema()


def test_a_new_version_lists_what_changed():
    old = TypeDefinition.model_validate(good())
    new = TypeDefinition.model_validate(
        broken(
            lambda d: (
                states(d).update(Escalated={"kind": "wait", "accepts": {"approve": {"trigger": "approve"}}}),
                d["transitions"].__setitem__(5, {"trigger": "expire", "source": "Approving", "dest": "Escalated"}),
                d["transitions"].append({"trigger": "approve", "source": "Escalated", "dest": "Approved"}),
                d.update(title="Leave request"),
            )
        )
    )
    assert changes_between(old, new) == [
        "title: 'Leave' → 'Leave request'",
        "added state 'Escalated'",
        "removed transition expire: 'Approving' → 'Refused'",
        "added transition approve: 'Escalated' → 'Approved'",
        "added transition expire: 'Approving' → 'Escalated'",
    ]
