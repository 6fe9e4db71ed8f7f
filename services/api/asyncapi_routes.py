"""The AsyncAPI document of the NATS subjects and the WebSocket feed (contracts/asyncapi.py), as JSON and as a page a
person reads: open, like the OpenAPI document at /schema."""

import html
import json
from functools import cache
from typing import Any

from litestar import MediaType, get
from litestar.datastructures import State

from contracts.asyncapi import asyncapi_document
from contracts.topology import Topology


@cache
def _document(topology: Topology) -> dict[str, Any]:
    return asyncapi_document(topology)


@get("/asyncapi", operation_id="asyncapi", tags=["operations"], security=[{}], include_in_schema=True)
async def asyncapi(state: State) -> dict[str, Any]:
    """The AsyncAPI 3 document of every NATS subject (commands, results, jobs, events, timers, dead letters, the state
    and types buckets) and of the broadcaster's WebSocket feed."""
    return _document(state.settings.topology)


@get("/asyncapi.html", operation_id="asyncapiPage", tags=["operations"], security=[{}], media_type=MediaType.HTML)
async def asyncapi_page(state: State) -> str:
    """The same document as a page: each channel's address, what it carries, and each message's JSON Schema."""
    return render(_document(state.settings.topology))


def render(document: dict[str, Any]) -> str:
    schemas = document["components"]["schemas"]
    rows, sections = [], []
    for name, channel in document["channels"].items():
        messages = [ref["$ref"].rsplit("/", 1)[1] for ref in channel["messages"].values()]
        links = ", ".join(f'<a href="#{m}">{m}</a>' for m in messages)
        rows.append(
            f"<tr><td><code>{html.escape(channel['address'])}</code></td><td>{html.escape(name)}</td>"
            f"<td>{html.escape(channel['description'])}</td><td>{links}</td></tr>"
        )
    for name in document["components"]["messages"]:
        schema = html.escape(json.dumps(schemas[name], indent=2))
        sections.append(f'<section id="{name}"><h3>{name}</h3><pre>{schema}</pre></section>')
    title = html.escape(document["info"]["title"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{vertical-align:top;padding:.3em .6em;border-bottom:1px "
        "solid #ddd}pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
        f"<h1>{title}</h1><p>AsyncAPI {document['asyncapi']} · <a href='/asyncapi'>the document (JSON)</a> · "
        f"the job protocol: docs/job-protocol.md</p><h2>Channels</h2><table><tr><th>address</th><th>channel</th>"
        f"<th>what</th><th>messages</th></tr>{''.join(rows)}</table><h2>Messages</h2>{''.join(sections)}"
        "</body></html>"
    )
