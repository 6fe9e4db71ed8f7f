"""How the CLI shows workflows and events to a person (with `--json`, it prints the API's JSON instead)."""

import json
from collections.abc import Sequence
from typing import Any

from contracts.events import ENVELOPE_FIELDS


def when(timestamp: str | None) -> str:
    """An ISO time to the second, as `2026-11-25 00:39:21`."""
    return timestamp[:19].replace("T", " ") if timestamp else "-"


def number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def workflow_line(workflow: dict[str, Any]) -> str:
    return f"{workflow['id']}  {workflow['business_state']}  ({workflow['infra_status']})"


def workflow_table(workflows: Sequence[dict[str, Any]]) -> str:
    headers = ("ID", "TYPE", "BUSINESS", "INFRA", "ATTEMPT", "OUTPUT", "UPDATED")
    rows = [
        (
            workflow["id"],
            workflow["type"] or "-",
            workflow["business_state"] or "-",
            workflow["infra_status"],
            str(workflow["attempt"]),
            number(workflow["output"]),
            when(workflow["updated_at"]),
        )
        for workflow in workflows
    ]
    return table(headers, rows)


def workflow_details(workflow: dict[str, Any]) -> str:
    fields = [
        ("id", workflow["id"]),
        ("type", workflow["type"] or "-"),
        ("business", workflow["business_state"] or "-"),
        ("infra", workflow["infra_status"]),
        ("attempt", str(workflow["attempt"])),
        ("output", number(workflow["output"])),
        ("error", workflow.get("error") or "-"),
        ("created", when(workflow["created_at"])),
        ("updated", when(workflow["updated_at"])),
        ("archived", "yes" if workflow.get("archived") else "no"),
    ]
    return "\n".join(f"{name:<9} {value}" for name, value in fields)


def shown(value: Any) -> str:
    """A field's value as it reads best on one line: words quoted when they contain a space, structures as JSON."""
    if isinstance(value, str):
        return repr(value) if " " in value else value
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def event_line(recorded: dict[str, Any], with_workflow: bool = False) -> str:
    """`sequence  time  [workflow]  Type  field=value ...`, the fields being whatever this type of event carries."""
    event = recorded["event"]
    details = " ".join(
        f"{name}={shown(value)}"
        for name, value in event.items()
        if name not in ENVELOPE_FIELDS and value not in (None, "", [], {})
    )
    columns = [f"{recorded['sequence']:>6}", when(event["occurred_at"])]
    if with_workflow:
        columns.append(event["workflow_id"])
    columns += [event["type"], details]
    return "  ".join(columns).rstrip()
