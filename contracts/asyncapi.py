"""The AsyncAPI 3 document of every NATS subject the system uses and of the broadcaster's WebSocket feed, generated from
the contracts' pydantic models: what a client in any language may publish, and what it reads (GET /asyncapi)."""

from typing import Any, get_args

from pydantic import BaseModel

from contracts import commands, events
from contracts.definitions import ApplyType, PublishedType, TypeApplied
from contracts.jobs import ProcessJob
from contracts.notifications import Delivery, Notification
from contracts.state import WorkflowState
from contracts.topology import Topology

ASYNCAPI_VERSION = "3.0.0"
SCHEMAS = "#/components/schemas/{model}"
WORKFLOW_ID = {"description": "the workflow's id"}
# A message with no model: the broadcaster's "nothing new up to here" line of the WebSocket feed.
HEARTBEAT = {
    "type": "object",
    "properties": {"type": {"const": "heartbeat"}, "sequence": {"type": "integer"}},
    "required": ["type", "sequence"],
    "additionalProperties": False,
}
DEAD_LETTER = {"description": "the message as it came, which could not be read: any bytes"}


def union_members(annotated: Any) -> list[type[BaseModel]]:
    """The models of a discriminated union (`Annotated[A | B, Field(discriminator=...)]`)."""
    return list(get_args(get_args(annotated)[0]))


def _channel(
    address: str, description: str, messages: list[str], parameters: dict | None = None, server: str = "nats"
) -> dict:
    channel: dict[str, Any] = {
        "address": address,
        "description": description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
        "servers": [{"$ref": f"#/servers/{server}"}],
    }
    if parameters:
        channel["parameters"] = parameters
    return channel


def asyncapi_document(topology: Topology, version: str = "0.1.0") -> dict[str, Any]:
    p = topology.prefix
    command_models = union_members(commands.Command)
    event_models = union_members(events.Event)
    people_commands = [
        m for m in command_models if m not in (commands.CompleteJob, commands.FailJob, commands.FireTimer)
    ]
    models: list[type[BaseModel]] = [
        *command_models, *event_models, ProcessJob, WorkflowState, PublishedType, ApplyType, TypeApplied,
        Delivery, Notification, events.RecordedEvent,
    ]  # fmt: skip
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=SCHEMAS)
        schemas |= schema.pop("$defs", {})
        schemas[model.__name__] = schema
    schemas["Heartbeat"], schemas["DeadLetter"] = HEARTBEAT, DEAD_LETTER
    messages = {
        name: {"name": name, "contentType": "application/json", "payload": {"$ref": SCHEMAS.format(model=name)}}
        for name in [model.__name__ for model in models] + ["Heartbeat", "DeadLetter"]
    }
    names = lambda group: [model.__name__ for model in group]  # noqa: E731
    workflow = {"workflow_id": WORKFLOW_ID}
    channels = {
        "commands": _channel(
            f"{p}.commands.{{workflow_id}}",
            "What people and clients ask of a workflow (JetStream, stream "
            f"{topology.commands_stream}; header Nats-Msg-Id: the command's message_id, for deduplication).",
            names(people_commands),
            workflow,
        ),
        "results": _channel(
            f"{p}.results.{{workflow_id}}",
            "A worker's answer to a job (docs/job-protocol.md); Nats-Msg-Id: <job_id>-result.",
            ["CompleteJob", "FailJob"],
            workflow,
        ),
        "jobs": _channel(
            f"{p}.jobs.{{workflow_type}}.{{step}}",
            f"One try of one step, for the workers (stream {topology.jobs_stream}, a work queue).",
            ["ProcessJob"],
            {"workflow_type": {"description": "the type's name"}, "step": {"description": "the step's name"}},
        ),
        "events": _channel(
            f"{p}.events.{{workflow_id}}",
            f"The log: a workflow's events, in order (stream {topology.events_stream}); only the orchestrator appends.",
            names(event_models),
            workflow,
        ),
        "timers": _channel(
            f"{p}.timers.{{workflow_id}}.{{timer_id}}",
            "A durable timer, held by the broker until due (header Nats-Schedule), then published to the fired "
            "subject.",
            ["FireTimer"],
            workflow | {"timer_id": {"description": "the timer's id"}},
        ),
        "fired": _channel(f"{p}.fired.{{workflow_id}}", "A timer that came due.", ["FireTimer"], workflow),
        "typesApply": _channel(
            f"{p}.types.apply",
            "Request/reply: a definition to publish as its type's next version; the reply is a TypeApplied.",
            ["ApplyType", "TypeApplied"],
        ),
        "deadLetters": _channel(
            f"{p}.dead.{{source}}",
            "What could not be read, as it came, with headers Wf-Error (why) and Wf-Subject (where it came from).",
            ["DeadLetter"],
            {"source": {"description": "commands, jobs or deliveries"}},
        ),
        "deliveries": _channel(
            f"{p}.deliveries.{{subscription_id}}",
            "A notification queued for one subscription (the notifier's stream).",
            ["Delivery"],
            {"subscription_id": {"description": "the subscription's id"}},
        ),
        "reminders": _channel(
            f"{p}.remind.{{workflow_id}}.{{entered_sequence}}",
            "A wait's reminder, held by the broker until due, then published to the reminders subject "
            f"{p}.reminders.{{workflow_id}}.",
            ["Notification"],
            workflow | {"entered_sequence": {"description": "the sequence of the event that entered the wait"}},
        ),
        "dueReminders": _channel(
            f"{p}.reminders.{{workflow_id}}", "A reminder that came due.", ["Notification"], workflow
        ),
        "stateBucket": _channel(
            f"$KV.{topology.state_bucket}.{{workflow_id}}",
            f"The read model: each workflow's state (KV bucket {topology.state_bucket}).",
            ["WorkflowState"],
            workflow,
        ),
        "typesBucket": _channel(
            f"$KV.{topology.types_bucket}.{{name}}.{{version}}",
            f"Every published version of every type (KV bucket {topology.types_bucket}, key <name>.<version>).",
            ["PublishedType"],
            {"name": {"description": "the type's name"}, "version": {"description": "its version, from 1"}},
        ),
        "feed": _channel(
            "/ws",
            "The broadcaster's WebSocket: every event with its sequence, and heartbeats; resume with ?since=<sequence>.",
            ["RecordedEvent", "Heartbeat"],
            server="broadcaster",
        ),
    }
    sent_by_clients = {"commands", "results"}
    operations = {
        f"{'send' if name in sent_by_clients else 'receive'}{name[0].upper()}{name[1:]}": {
            "action": "send" if name in sent_by_clients else "receive",
            "channel": {"$ref": f"#/channels/{name}"},
        }
        for name in channels
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Approval workflows: NATS subjects and the WebSocket feed",
            "version": version,
            "description": "Generated from contracts/ (contracts/asyncapi.py). The job protocol: docs/job-protocol.md.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {"host": "127.0.0.1:4222", "protocol": "nats", "description": "NATS with JetStream"},
            "broadcaster": {"host": "127.0.0.1:8001", "protocol": "ws", "description": "the WebSocket feed"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }
