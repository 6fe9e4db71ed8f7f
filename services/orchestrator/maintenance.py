"""Checking and rebuilding from the log, for operators, tests and benchmarks.

    python -m services.orchestrator.maintenance check     # every invariant and hash chain, over every workflow
    python -m services.orchestrator.maintenance rebuild   # the wf_state read model, from the log alone
"""

import argparse
import asyncio
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import KeyNotFoundError, NoKeysError

from contracts.chain import verify
from contracts.eventlog import recorded_event
from contracts.events import RecordedEvent
from contracts.settings import ServiceSettings
from contracts.state import WorkflowState
from contracts.topology import UNAVAILABLE, UNAVAILABLE_RETRY_S, Topology, patiently
from services.orchestrator.domain.declaration import IllegalTransition
from services.orchestrator.domain.engine import fold
from services.orchestrator.store import JetStreamEventStore

FETCH_BATCH = 1000
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

    @property
    def problems(self) -> list[str]:
        return self.illegal + self.applied_twice + self.unanswered + self.read_model_mismatches + self.broken_chains

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (
            f"{self.workflows} workflows, {self.events} events: {len(self.illegal)} illegal, "
            f"{len(self.applied_twice)} applied twice, {len(self.unanswered)} unanswered, "
            f"{len(self.read_model_mismatches)} read-model mismatches, {len(self.broken_chains)} broken chains"
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


async def check(js: JetStreamContext, topology: Topology, sent_commands: Iterable[tuple[str, str]] = ()) -> Report:
    """Every invariant over the whole log. `sent_commands` are (workflow id, command id) pairs a client sent: each
    must be answered in its workflow's log, by the events it caused or by a CommandRejected."""
    logs = await read_all_events(js, topology)
    state_bucket = await js.key_value(topology.state_bucket)
    report = Report(workflows=len(logs), events=sum(len(log) for log in logs.values()))
    for workflow_id, log in logs.items():
        read_model = await _read_model(state_bucket, workflow_id)
        head = (read_model.last_sequence, read_model.chain_head) if read_model and read_model.chain_head else None
        if broken := verify(workflow_id, (recorded.link for recorded in log), head).broken:
            report.broken_chains.append(f"{workflow_id}: at sequence {broken.at}, {broken.reason}")
        try:
            replayed = fold(WorkflowState(id=workflow_id), log)
        except IllegalTransition as error:
            report.illegal.append(f"{workflow_id}: {error}")
            continue
        report.applied_twice += [f"{workflow_id}: {command}" for command in applied_twice(log)]
        if replayed.exists and read_model != replayed:
            report.read_model_mismatches.append(workflow_id)
    answered = {(wf, event.event.causation_id) for wf, log in logs.items() for event in log}
    report.unanswered = [f"{wf}: {command}" for wf, command in sent_commands if (wf, command) not in answered]
    return report


async def _read_model(bucket, workflow_id: str) -> WorkflowState | None:
    try:
        return WorkflowState.model_validate_json((await patiently(partial(bucket.get, workflow_id))).value)
    except KeyNotFoundError:
        return None


async def rebuild(
    nc: nats.NATS, js: JetStreamContext, topology: Topology, progress: Callable[[int, int], None] = lambda d, t: None
) -> int:
    """Empty the read model, then write each workflow's state as a replay of its log gives it. The store never moves
    an entry backwards, so an orchestrator appending meanwhile is not undone."""
    bucket = await js.key_value(topology.state_bucket)
    try:
        for key in await bucket.keys():
            await bucket.purge(key)
    except NoKeysError:
        pass
    logs = await read_all_events(js, topology, progress)
    store = JetStreamEventStore(nc, js, bucket, topology)
    for workflow_id, log in logs.items():
        await store.save(fold(WorkflowState(id=workflow_id), log))
    return len(logs)


def _progress_bar(done: int, total: int) -> None:
    width = 40
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} events")
    if done >= total:
        sys.stderr.write("\n")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.orchestrator.maintenance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["check", "rebuild"])
    action = parser.parse_args(argv).action
    settings = ServiceSettings()
    nc = await nats.connect(**settings.nats_connection("maintenance"))  # as an operator: the admin user, TLS if set
    try:
        js = nc.jetstream()
        if action == "rebuild":
            count = await rebuild(nc, js, settings.topology, _progress_bar)
            print(f"rebuilt the read model of {count} workflows from the log")
            return 0
        report = await check(js, settings.topology)
        print(report.summary())
        for problem in report.problems:
            print(f"  {problem}")
        return 0 if report.ok else 1
    finally:
        await nc.drain()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
