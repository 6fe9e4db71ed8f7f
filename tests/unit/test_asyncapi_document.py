"""The AsyncAPI document (contracts/asyncapi.py) names every subject and message, resolves every reference, and
describes what the broadcaster's feed sends. (tests/integration/conftest.py checks every message the integration
tests see against it.)"""

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from contracts.asyncapi import asyncapi_document, union_members
from contracts.commands import Command
from contracts.events import Event
from contracts.topology import Topology
from services.broadcaster.messages import event_message, heartbeat_message
from tests.asyncapi_check import AsyncApiCheck

TOPOLOGY = Topology()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi_document(TOPOLOGY)


def references(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def test_it_is_asyncapi_3_and_every_reference_resolves(document):
    assert document["asyncapi"] == "3.0.0"
    for reference in set(references(document)):
        node = document
        for part in reference.removeprefix("#/").split("/"):
            assert part in node, f"{reference} does not resolve"
            node = node[part]
    for name, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), name


def test_every_parameter_of_an_address_is_described(document):
    for name, channel in document["channels"].items():
        named = set(re.findall(r"\{([a-z_]+)\}", channel["address"]))
        assert named == set(channel.get("parameters", {})), name


def test_every_command_and_event_is_a_message_of_its_channel(document):
    channels = document["channels"]
    commands = {member.__name__ for member in union_members(Command)}
    events = {member.__name__ for member in union_members(Event)}
    sent = set(channels["commands"]["messages"]) | set(channels["results"]["messages"]) | {"FireTimer"}
    assert commands == sent and set(channels["fired"]["messages"]) == {"FireTimer"}
    assert set(channels["events"]["messages"]) == events


def test_the_subjects_of_the_topology_are_its_channels(document):
    check = AsyncApiCheck(document)
    subjects = [
        TOPOLOGY.commands_subject("wf-1"), TOPOLOGY.results_subject("wf-1"), TOPOLOGY.fired_subject("wf-1"),
        TOPOLOGY.events_subject("wf-1"), TOPOLOGY.jobs_subject("expense", "pay"), TOPOLOGY.timer_subject("wf-1", "t"),
        TOPOLOGY.deliveries_subject("s-1"), TOPOLOGY.reminder_schedule_subject("wf-1", 7),
        TOPOLOGY.reminders_subject("wf-1"), TOPOLOGY.types_apply_subject(), TOPOLOGY.dead_subject("jobs"),
        f"$KV.{TOPOLOGY.state_bucket}.wf-1", f"$KV.{TOPOLOGY.types_bucket}.expense.2",
    ]  # fmt: skip
    for subject in subjects:
        check.check(subject, b"{}")
    assert not [problem for problem in check.problems if "on no channel" in problem]


def test_what_the_broadcaster_sends_fits_the_feed(document):
    event = {
        "type": "WorkflowStarted",
        "workflow_id": "wf-1",
        "message_id": "m-1",
        "occurred_at": "2026-12-04T10:00:00Z",
    }
    feed = document["channels"]["feed"]["messages"]
    validator = Draft202012Validator(
        {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in feed], "components": document["components"]}
    )
    for sent in (event_message(42, json.dumps(event).encode()), heartbeat_message(42)):
        assert not list(validator.iter_errors(json.loads(sent))), sent
    assert list(validator.iter_errors({"type": "heartbeat"}))  # no sequence: it fits nothing


def test_a_message_that_fits_no_contract_is_told(document):
    check = AsyncApiCheck(document)
    check.check(TOPOLOGY.commands_subject("wf-1"), b'{"kind": "approve", "workflow_id": 7}')
    check.check("elsewhere.wf-1", b"{}")
    assert len(check.problems) == 2 and "on no channel" in check.problems[1]
