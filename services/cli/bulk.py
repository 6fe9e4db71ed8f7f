"""`wf bulk <action> [FILTER ...]`: start a bulk action on every workflow the filters match (`POST
/workflows/bulk/<action>`), then follow its progress until it has finished: from the broadcaster's WebSocket
(`?bulk=<id>`), or, when that cannot be reached, from the API (`GET /bulk/<id>`). Then what was refused, and why."""

import argparse
import json
import sys
import time
from typing import Any
from urllib.parse import quote, urlencode

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect

from services.cli.api import Api, CliError
from services.cli.output import table

ACTIONS = ("cancel", "approve", "reject", "retry", "archive", "migrate")
EXIT_OK, EXIT_FAILED = 0, 1
OPEN_TIMEOUT_S = 10.0
POLL_S = 0.5
UNAUTHORIZED = 4401


def add_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("action", choices=ACTIONS, help="the command each matching workflow is sent")
    command.add_argument(
        "filters",
        nargs="*",
        metavar="FILTER",
        help="as GET /workflows takes them: business_state='Waiting For Approval', type=expense, "
        "waiting_for=ann, 'amount>=1000' (none: every workflow that is not archived)",
    )
    command.add_argument("--reason", help="why (cancel, reject)")
    command.add_argument("--comment", help="a comment (approve)")
    command.add_argument("--to-version", type=int, metavar="N", help="the version to move them to (migrate)")
    command.set_defaults(run=bulk)


def bulk(api: Api, args: argparse.Namespace) -> int:
    query = "&".join(quote(expression, safe="") for expression in args.filters)
    given = (("reason", args.reason), ("comment", args.comment), ("to_version", args.to_version))
    body = {name: value for name, value in given if value is not None}
    path = f"/workflows/bulk/{args.action}" + (f"?{query}" if query else "")
    started = api.request("POST", path, body=body or None).body
    bulk_id = started["id"]
    if not args.json:
        print(f"bulk {bulk_id}: {args.action} {started['total']} workflows")
    follow(api, bulk_id, show=None if args.json else progress_line)
    final = api.request("GET", f"/bulk/{bulk_id}").body
    if args.json:
        print(json.dumps(final, indent=2))
    else:
        report(final)
    return EXIT_FAILED if final["refused"] or final["stopped"] else EXIT_OK


def follow(api: Api, bulk_id: str, show) -> None:
    """Until the bulk has finished, calling `show` with each progress report that differs from the one before."""
    shown: list[tuple[int, int, int]] = []

    def seen(progress: dict[str, Any]) -> bool:
        """Shows it when it moved; true once the bulk has finished. (`refused` is a count on the WebSocket, the
        refusals themselves from the API.)"""
        refused = progress["refused"] if isinstance(progress["refused"], int) else len(progress["refused"])
        counts = (progress["done"], refused, progress["remaining"])
        if show and counts not in shown[-1:]:
            show(progress["total"], *counts)
        shown.append(counts)
        return progress["finished_at"] is not None

    url = api.request("GET", "/config").body["broadcaster_url"]
    address = f"{url}?{urlencode({'bulk': bulk_id})}"
    try:
        tls = api.tls if address.startswith("wss:") else None
        with connect(address, open_timeout=OPEN_TIMEOUT_S, additional_headers=api.auth_headers, ssl=tls) as socket:
            for text in socket:
                message = json.loads(text)
                if message.get("type") == "bulk" and seen(message):
                    return
        reason = "the broadcaster closed the connection"
    except ConnectionClosed as closed:
        if closed.rcvd is not None and closed.rcvd.code == UNAUTHORIZED:
            raise CliError(f"the broadcaster refused: {closed.rcvd.reason}") from None
        reason = f"connection lost ({closed})"
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
        reason = f"cannot follow it on the broadcaster at {url} ({error})"
    print(f"wf: {reason}; following the bulk through the API", file=sys.stderr)
    while not seen(api.request("GET", f"/bulk/{bulk_id}").body):
        time.sleep(POLL_S)


def progress_line(total: int, done: int, refused: int, remaining: int) -> None:
    print(f"  {done} done, {refused} refused, {remaining} remaining of {total}")
    sys.stdout.flush()


def report(final: dict[str, Any]) -> None:
    refused = final["refused"]
    if refused:
        rows = [(item["workflow_id"], item["code"], item["reason"]) for item in refused]
        print(table(("REFUSED", "CODE", "REASON"), rows))
    summary = f"bulk {final['id']}: {final['action']}: {final['done']} done, {len(refused)} refused"
    print(summary + (f", {final['remaining']} not acted on" if final["remaining"] else ""))
    if final["stopped"]:
        print(f"wf: {final['stopped']}", file=sys.stderr)
