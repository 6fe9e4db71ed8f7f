"""Checking and rebuilding from the log, for operators, tests and benchmarks.

python -m services.orchestrator.maintenance check          # every invariant and hash chain, over every workflow,
                                                           # and the index (WF_INDEX_URL) against the replay
python -m services.orchestrator.maintenance rebuild        # the wf_state read model, from the log alone
python -m services.orchestrator.maintenance rebuild-index  # the read model from the log, then the index from it
"""

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts import index
from contracts.chain import verify
from contracts.events import RecordedEvent
from contracts.state import WorkflowState
from contracts.topology import Topology
from runtime.eventlog import current_entries, recorded_event
from runtime.index_db import IndexSettings, connect
from runtime.settings import ServiceSettings
from runtime.streams import UNAVAILABLE, UNAVAILABLE_RETRY_S, patiently
from services.orchestrator.catalog import published_versions
from services.orchestrator.domain.declaration import IllegalTransition
from services.orchestrator.domain.engine import Engine
from services.orchestrator.store import JetStreamEventStore

FETCH_BATCH = 1000
INDEX_REBUILD_WAIT_S = 600.0
UNAVAILABLE_FOR_S = 30.0


async def read_all_events(
    js: JetStreamContext, topology: Topology, progress: Callable[[int, int], None] = lambda done, total: None
) -> dict[str, list[RecordedEvent]]:
    """Every workflow's log, from the whole events stream, in order. A cluster electing a leader answers "unavailable"
    for a moment: reading then starts again after the last event read, for up to UNAVAILABLE_FOR_S."""
    logs: dict[str, list[RecordedEvent]] = defaultdict(list)
    total, seen, unavailable_since = None, 0, None
    while True:
        try:
            total = total or (await js.stream_info(topology.events_stream)).state.last_seq
            async for subject, recorded in _events_after(js, topology, seen, total):
                logs[topology.workflow_id_of(subject)].append(recorded)
                seen = recorded.sequence
                unavailable_since = None
                if seen % FETCH_BATCH == 0 or seen == total:
                    progress(seen, total)
            return logs
        except UNAVAILABLE:
            unavailable_since = unavailable_since or time.monotonic()
            if time.monotonic() - unavailable_since > UNAVAILABLE_FOR_S:
                raise
            await asyncio.sleep(UNAVAILABLE_RETRY_S)


async def _events_after(
    js: JetStreamContext, topology: Topology, after: int, last: int
) -> AsyncIterator[tuple[str, RecordedEvent]]:
    """The events stored after stream sequence `after` up to `last`, with their subjects. Read while any are pending,
    so events deleted from the end leave no gap to wait for."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after + 1,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,  # the server removes it if an interruption leaves it behind
    )
    subscription = await js.pull_subscribe(topology.events_subject(), stream=topology.events_stream, config=config)
    try:
        pending = (await subscription.consumer_info()).num_pending
        while pending:
            for message in await subscription.fetch(min(FETCH_BATCH, pending), timeout=5):
                sequence, pending = message.metadata.sequence.stream, message.metadata.num_pending
                if sequence > last:
                    return
                yield message.subject, recorded_event(sequence, message.data)
    finally:
        await subscription.unsubscribe()


@dataclass
class Report:
    workflows: int = 0
    events: int = 0
    illegal: list[str] = field(default_factory=list)  # logs that are not a path of their machine
    applied_twice: list[str] = field(default_factory=list)  # commands whose events appear in two decisions
    unanswered: list[str] = field(default_factory=list)  # commands sent that the log never answered
    read_model_mismatches: list[str] = field(default_factory=list)  # read model differs from a replay
    broken_chains: list[str] = field(default_factory=list)  # logs whose hash chain breaks: the first broken link
    index_mismatches: list[str] = field(default_factory=list)  # the index differs from a replay (when checked)

    @property
    def problems(self) -> list[str]:
        return (
            self.illegal
            + self.applied_twice
            + self.unanswered
            + self.read_model_mismatches
            + self.broken_chains
            + self.index_mismatches
        )

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (
            f"{self.workflows} workflows, {self.events} events: {len(self.illegal)} illegal, "
            f"{len(self.applied_twice)} applied twice, {len(self.unanswered)} unanswered, "
            f"{len(self.read_model_mismatches)} read-model mismatches, {len(self.broken_chains)} broken chains, "
            f"{len(self.index_mismatches)} index mismatches"
        )


def applied_twice(log: list[RecordedEvent]) -> list[str]:
    """Commands applied more than once. One decision's events are appended together, so a command's events form one
    unbroken run; the same cause again after another's means the command was decided twice."""
    finished, twice, current = set(), [], None
    for recorded in log:
        cause = recorded.event.causation_id
        if cause != current:
            if cause in finished:
                twice.append(cause)
            if current is not None:
                finished.add(current)
            current = cause
    return twice


async def check(
    js: JetStreamContext,
    topology: Topology,
    sent_commands: Iterable[tuple[str, str]] = (),
    index_engine: AsyncEngine | None = None,
) -> Report:
    """Every invariant over the whole log. `sent_commands` are (workflow id, command id) pairs a client sent: each
    must be answered in its workflow's log, by the events it caused or by a CommandRejected. With `index_engine`, the
    query side's index must equal the replay too (so check it once the indexer has caught up)."""
    logs = await read_all_events(js, topology)
    state_bucket = await js.key_value(topology.state_bucket)
    report = Report(workflows=len(logs), events=sum(len(log) for log in logs.values()))
    replays: dict[str, WorkflowState] = {}
    engine = Engine(await published_versions(js, topology))
    for workflow_id, log in logs.items():
        read_model = await _read_model(state_bucket, workflow_id)
        head = (
            (read_model.last_sequence, read_model.bookkeeping.chain_head)
            if read_model and read_model.bookkeeping.chain_head
            else None
        )
        if broken := verify(workflow_id, (recorded.link for recorded in log), head).broken:
            report.broken_chains.append(f"{workflow_id}: at sequence {broken.at}, {broken.reason}")
        try:
            replayed = engine.fold(WorkflowState(id=workflow_id), log)
        except IllegalTransition as error:
            report.illegal.append(f"{workflow_id}: {error}")
            continue
        report.applied_twice += [f"{workflow_id}: {command}" for command in applied_twice(log)]
        if replayed.exists and read_model != replayed:
            report.read_model_mismatches.append(workflow_id)
        if replayed.exists:
            replays[workflow_id] = replayed
    answered = {(wf, event.event.causation_id) for wf, log in logs.items() for event in log}
    report.unanswered = [f"{wf}: {command}" for wf, command in sent_commands if (wf, command) not in answered]
    if index_engine is not None:
        report.index_mismatches = await index_mismatches(index_engine, replays)
    return report


async def index_mismatches(engine: AsyncEngine, replays: dict[str, WorkflowState]) -> list[str]:
    """Where the index differs from what the replays make of it: each workflow's row, its search values and who it
    waits for, and nothing in the index that the log does not have."""
    async with engine.connect() as connection:
        rows = {row.id: row._asdict() for row in (await connection.execute(select(index.workflows))).all()}
        children = {}
        for table, key in ((index.search_values, ("name", "number", "text")), (index.waiting_for, ("actor",))):
            found = defaultdict(set)
            for row in (await connection.execute(select(table))).all():
                found[row.workflow_id].add(tuple(getattr(row, column) for column in key))
            children[table.name] = (found, key)
    problems = []
    for workflow_id, state in replays.items():
        row = rows.pop(workflow_id, None)
        if row is None:
            problems.append(f"{workflow_id}: not in the index")
            continue
        expected = index.workflow_row(state)
        differs = [column for column, value in expected.items() if _comparable(row[column]) != _comparable(value)]
        for (found, key), rows_of in zip(
            children.values(), (index.search_value_rows, index.waiting_for_rows), strict=True
        ):
            if found.get(workflow_id, set()) != {tuple(each[column] for column in key) for each in rows_of(state)}:
                differs.append(rows_of.__name__)
        if differs:
            problems.append(f"{workflow_id}: the index differs from the replay in {', '.join(differs)}")
    problems += [f"{workflow_id}: in the index, but not in the log" for workflow_id in rows]
    return problems


def _comparable(value):
    """Times as the index gives them back (SQLite drops the zone; both are UTC)."""
    return (
        index.utc(value.replace(tzinfo=UTC) if value.tzinfo is None else value)
        if isinstance(value, datetime)
        else value
    )


async def reset_index(engine: AsyncEngine) -> None:
    """Empty the index: the indexer builds it again from the start of the read model's stream."""
    async with engine.begin() as connection:
        for table in (index.search_values, index.waiting_for, index.workflows, index.position):
            await connection.execute(delete(table))


async def index_position(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        at = await connection.scalar(
            select(index.position.c.sequence).where(index.position.c.name == index.READ_MODEL_POSITION)
        )
    return at or 0


async def _read_model(bucket, workflow_id: str) -> WorkflowState | None:
    try:
        return WorkflowState.model_validate_json((await patiently(partial(bucket.get, workflow_id))).value)
    except KeyNotFoundError:
        return None


async def rebuild(
    nc: Client, js: JetStreamContext, topology: Topology, progress: Callable[[int, int], None] = lambda d, t: None
) -> int:
    """Empty the read model, then write each workflow's state as a replay of its log gives it. The store never moves
    an entry backwards, so an orchestrator appending meanwhile is not undone."""
    bucket = await js.key_value(topology.state_bucket)
    for key in await current_entries(js, topology, topology.state_bucket):
        await bucket.purge(key)
    logs = await read_all_events(js, topology, progress)
    engine = Engine(await published_versions(js, topology))
    store = JetStreamEventStore(nc, js, bucket, topology, engine=engine)
    for workflow_id, log in logs.items():
        await store.save(engine.fold(WorkflowState(id=workflow_id), log))
    return len(logs)


def _progress_bar(done: int, total: int) -> None:
    width = 40
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events")
    if done >= total:
        sys.stderr.write("\n")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.orchestrator.maintenance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["check", "rebuild", "rebuild-index"])
    action = parser.parse_args(argv).action
    settings = MaintenanceSettings()
    nc = await nats.connect(**settings.nats_connection("maintenance"))  # as an operator: the admin user, TLS if set
    engine = connect(settings.index_url) if settings.has_index else None
    try:
        js = nc.jetstream()
        if action in ("rebuild", "rebuild-index"):
            count = await rebuild(nc, js, settings.topology, _progress_bar)
            print(f"rebuilt the read model of {count} workflows from the log")
        if action == "rebuild-index":
            if engine is None:
                print(f"no index at {settings.index_url} (WF_INDEX_URL)", file=sys.stderr)
                return 1
            return await rebuild_index(js, settings.topology, engine)
        if action == "check":
            if engine is None:
                print(f"no index at {settings.index_url} (WF_INDEX_URL): checking the log and the read model only")
            report = await check(js, settings.topology, index_engine=engine)
            print(report.summary())
            for problem in report.problems:
                print(f"  {problem}")
            return 0 if report.ok else 1
        return 0
    finally:
        if engine is not None:
            await engine.dispose()
        await nc.drain()


async def rebuild_index(js: JetStreamContext, topology: Topology, engine: AsyncEngine) -> int:
    """Empty the index and wait until the indexer has built it again from the whole read model."""
    await reset_index(engine)
    end = (await js.stream_info(topology.kv_stream(topology.state_bucket))).state.last_seq
    started = time.monotonic()
    while (at := await index_position(engine)) < end:
        _progress_bar(at, end)
        if time.monotonic() - started > INDEX_REBUILD_WAIT_S:
            print(
                f"\nthe index is at {at} of {end} after {INDEX_REBUILD_WAIT_S:.0f} s: is the indexer running?",
                file=sys.stderr,
            )
            return 1
        await asyncio.sleep(0.2)
    _progress_bar(end, end)
    print(f"the indexer rebuilt the index from the read model in {time.monotonic() - started:.1f} s")
    return 0


class MaintenanceSettings(ServiceSettings, IndexSettings):
    @property
    def has_index(self) -> bool:
        """A database server, or an index file that exists (the default one is the launcher's, under data/)."""
        path = self.index_url.partition(":///")[2]
        return not self.index_url.startswith("sqlite") or bool(path) and Path(path).is_file()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
