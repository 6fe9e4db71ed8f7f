"""The hash chain of a workflow's log: every event carries, as `previous_hash`, the SHA-256 of the event stored before
it in its workflow's log, byte for byte as stored; the first carries that of the workflow's id (the chain's anchor).
The orchestrator links each event as it appends it. A removed, altered, moved or inserted event breaks the next link;
the end of a log is anchored by its head (the hash of its last event), which the read model keeps and the API shows,
so events cut from the end are found too.

Standard library only, so it also runs alone, outside the project, on an export of one workflow's log (one stored
event per line, as `GET /workflows/{id}/export` gives it):

    python3 contracts/chain.py order-42.jsonl [--head <the head the API's /verify showed>]

It prints the head and exits 0 when every link holds, or names the first broken link and exits 1."""

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass


def digest(data: bytes) -> str:
    """An event's hash: SHA-256 of its bytes as stored, in hex."""
    return hashlib.sha256(data).hexdigest()


def anchor(workflow_id: str) -> str:
    """What the first event of a workflow's log links to."""
    return digest(workflow_id.encode())


@dataclass(frozen=True)
class Link:
    """What the chain needs of one stored event."""

    at: int  # its stream sequence (or its line in an export)
    workflow_id: str | None  # None: not readable as an event
    previous_hash: str | None
    digest: str

    @classmethod
    def of(cls, at: int, data: bytes) -> "Link":
        try:
            event = json.loads(data)
            return cls(at, event.get("workflow_id"), event.get("previous_hash"), digest(data))
        except (ValueError, AttributeError):
            return cls(at, None, None, digest(data))


@dataclass(frozen=True)
class BrokenLink:
    at: int  # the stream sequence of the event whose link fails (or its line in an export)
    reason: str


@dataclass(frozen=True)
class Verification:
    events: int
    head: str | None  # the hash of the last event; None for an empty log
    broken: BrokenLink | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(workflow_id: str, log: Iterable[Link], head: tuple[int, str] | None = None) -> Verification:
    """Walk the links of one workflow's log, in log order. `head`, when known, is (sequence, hash) of an event the log
    must hold: the last one the read model folded in, say, so events cut from the end, or the last one altered, show."""
    expected, count, at = anchor(workflow_id), 0, 0
    for link in log:
        count, at = count + 1, link.at

        def broken(reason: str) -> Verification:
            return Verification(count, None, BrokenLink(at, reason))

        if link.workflow_id is None:
            return broken("not an event (unreadable JSON)")
        if link.workflow_id != workflow_id:
            return broken(f"an event of workflow {link.workflow_id!r}, not {workflow_id!r}")
        if link.previous_hash is None:
            return broken("the event carries no link (previous_hash)")
        if link.previous_hash != expected:
            what = "the workflow's anchor" if count == 1 else "the event before it"
            return broken(
                f"its link {link.previous_hash[:12]}… is not {what} ({expected[:12]}…): an event before "
                "it was removed, altered, moved or inserted"
            )
        if head and link.at == head[0] and link.digest != head[1]:
            return broken(f"it hashes to {link.digest[:12]}…, not to the head {head[1][:12]}… recorded for it: altered")
        expected = link.digest
    if head and at < head[0]:
        return Verification(count, None, BrokenLink(at, f"the log ends before its recorded head at {head[0]}: cut"))
    return Verification(count, expected if count else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify the hash chain of one workflow's exported log.")
    parser.add_argument("export", help="the export: one stored event per line, in log order")
    parser.add_argument("--head", help="the head the log must end at (GET /workflows/{id}/verify shows it)")
    arguments = parser.parse_args(argv)
    with open(arguments.export, "rb") as export:
        links = [Link.of(number, line.rstrip(b"\n")) for number, line in enumerate(export, 1) if line.strip()]
    if not links:
        print("the export holds no event", file=sys.stderr)
        return 1
    workflow_id = links[0].workflow_id or ""
    result = verify(workflow_id, links, (links[-1].at, arguments.head) if arguments.head else None)
    if result.broken:
        print(f"{workflow_id}: broken at line {result.broken.at}: {result.broken.reason}")
        return 1
    print(f"{workflow_id}: {result.events} events, every link holds; head {result.head}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
