"""Bulk actions (contracts/bulk.py): the workflows a filter matches, fixed when the bulk starts, each sent its own
ordinary command in the background, with an id derived from the bulk's and the workflow's, so that a command sent again
(by this process after a timeout, or by another that took the bulk over) is applied once.

Any API process may run any bulk: the one that starts a bulk holds a lease on it (a time in its record, written with
compare-and-set on the record's KV revision) and renews it while it runs. Every process looks for unfinished bulks
whose lease ran out (its holder died or was cut off) and takes them over, with the same compare-and-set: one wins. A
process that stops releases its leases, so a restart goes on at once."""

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypedDict

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.auth import COMMAND_ROLES, TokenHolder
from contracts.bulk import (
    IDS_PER_KEY,
    REASON_KEPT,
    BulkAction,
    BulkRecord,
    BulkRefusal,
    command_id,
    ids_key,
    meta_key,
    refused_key,
)
from contracts.commands import (
    ApproveWorkflow,
    ArchiveWorkflow,
    CancelWorkflow,
    CommandMessage,
    MigrateWorkflow,
    RejectWorkflow,
    RetryWorkflow,
)
from contracts.envelope import utcnow
from contracts.events import CommandRejected, Event
from contracts.ids import new_id
from runtime.nats_link import NatsLink, NotConnected, cancel_all
from runtime.tokens import TokensFile
from services.api.errors import BulkNotFound, CommandRefused
from services.api.index import WorkflowIndex
from services.api.search import BadFilter, Cursor, Search
from services.api.settings import ApiSettings
from services.api.workflows import Workflows, current_values

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.25  # progress is written (and so relayed to the WebSocket) at most this often
RETRY_FIRST_S, RETRY_LAST_S = 0.2, 5.0  # a command with no outcome yet is sent again after these (doubling) pauses
RELEASE_TIMEOUT_S = 2.0
TRANSIENT = (NatsError, NotConnected, TimeoutError)


class CommandIds(TypedDict):
    """What each of a bulk's commands carries besides its action's own: which workflow, its id, and who sends it."""

    workflow_id: str
    message_id: str
    actor: str
    groups: list[str]


class BulkBody(TypedDict, total=False):
    """What a bulk's commands take from its request: a reason (cancel, reject) or a comment (approve)."""

    reason: str
    comment: str
    to_version: int


class Lease(TypedDict):
    lease_holder: str
    lease_until: datetime


# The command each action sends to one workflow; approve and reject decide as the one who started the bulk.
COMMANDS: dict[str, Callable[[BulkRecord, CommandIds], CommandMessage]] = {
    "cancel": lambda bulk, ids: CancelWorkflow(**ids, reason=bulk.reason),
    "approve": lambda bulk, ids: ApproveWorkflow(**ids, approver=bulk.by, comment=bulk.comment),
    "reject": lambda bulk, ids: RejectWorkflow(**ids, approver=bulk.by, reason=bulk.reason),
    "retry": lambda bulk, ids: RetryWorkflow(**ids),
    "archive": lambda bulk, ids: ArchiveWorkflow(**ids),
    "migrate": lambda bulk, ids: MigrateWorkflow(**ids, to_version=bulk.to_version or 0),  # (the route requires it)
}


class LeaseLost(Exception):
    """The bulk's record changed under this process: another took it over (its lease had run out)."""


class NoOutcomeYet(Exception):
    """The command's outcome did not come within the wait: it is sent again (under the same id)."""


def command_for(bulk: BulkRecord, workflow_id: str) -> CommandMessage:
    ids = CommandIds(
        workflow_id=workflow_id, message_id=command_id(bulk.id, workflow_id), actor=bulk.by, groups=bulk.groups
    )
    return COMMANDS[bulk.action](bulk, ids)


async def matching_ids(index: WorkflowIndex, search: Search, page_size: int, most: int) -> list[str]:
    """The ids of every workflow the search matches now, walking the index page after page."""
    ids: list[str] = []
    search = replace(search, limit=page_size, after=None)
    while True:
        page, _ = await index.search(search)
        ids += [item["id"] for item in page.items]
        if len(ids) > most:
            raise BadFilter(
                f"the filter matches more than {most} workflows, the most one bulk acts on (WF_BULK_MAX): narrow it"
            )
        if page.next is None:
            return ids
        search = replace(search, after=Cursor.decode(page.next, search.sort))


class BulkStore:
    """The bulks' records, ids and refusals in the KV bucket (contracts/bulk.py)."""

    def __init__(self, link: NatsLink, settings: ApiSettings) -> None:
        self._link = link
        self._bucket = settings.topology.bulk_bucket

    async def _kv(self) -> KeyValue:
        return await self._link.js.key_value(self._bucket)

    async def create(self, record: BulkRecord, ids: list[str]) -> int:
        """Store a new bulk: its ids first, then its record (which is what makes it exist); the record's revision."""
        kv = await self._kv()
        for chunk in range(record.chunks):
            part = ids[chunk * IDS_PER_KEY : (chunk + 1) * IDS_PER_KEY]
            await kv.put(ids_key(record.id, chunk), json.dumps(part).encode())
        return await kv.create(meta_key(record.id), record.model_dump_json().encode())

    async def load(self, bulk_id: str) -> tuple[BulkRecord, int] | None:
        """The bulk's record and its revision; None when there is no such bulk."""
        try:
            entry = await (await self._kv()).get(meta_key(bulk_id))
        except KeyNotFoundError:
            return None
        assert entry.value is not None and entry.revision is not None  # a get's entry has both; nats-py: optional
        return BulkRecord.model_validate_json(entry.value), entry.revision

    async def get(self, bulk_id: str) -> BulkRecord:
        loaded = await self.load(bulk_id)
        if loaded is None:
            raise BulkNotFound(bulk_id)
        return loaded[0]

    async def save(self, record: BulkRecord, revision: int) -> int:
        """Write the record if it is still at `revision` (else LeaseLost); its new revision."""
        try:
            kv = await self._kv()
            return await kv.update(meta_key(record.id), record.model_dump_json().encode(), last=revision)
        except KeyWrongLastSequenceError:
            raise LeaseLost(record.id) from None

    async def ids(self, record: BulkRecord) -> list[str]:
        """The ids of its workflows, in order; fewer than its total when some have expired (the bucket's TTL)."""
        kv, ids = await self._kv(), []
        for chunk in range(record.chunks):
            try:
                entry = await kv.get(ids_key(record.id, chunk))
            except KeyNotFoundError:
                break
            assert entry.value is not None  # (as in load)
            ids += json.loads(entry.value)
        return ids

    async def refuse(self, bulk_id: str, refusal: BulkRefusal) -> None:
        await (await self._kv()).put(refused_key(bulk_id, refusal.workflow_id), refusal.model_dump_json().encode())

    async def refusals(self, bulk_id: str) -> list[BulkRefusal]:
        """The bulk's refusals, in the order they came."""
        values = await current_values(self._link.js, self._bucket, refused_key(bulk_id, "*"))
        return [BulkRefusal.model_validate_json(value) for value in values]

    async def unfinished(self) -> list[BulkRecord]:
        records = [
            BulkRecord.model_validate_json(value)
            for value in await current_values(self._link.js, self._bucket, meta_key("*"))
        ]
        return [record for record in records if record.finished_at is None]


class BulkRunner:
    """Runs bulks in this API process: those it starts, and any other whose runner stopped renewing its lease."""

    def __init__(
        self, link: NatsLink, store: BulkStore, workflows: Workflows, tokens: TokensFile | None, settings: ApiSettings
    ) -> None:
        self._link, self.store, self._workflows, self._tokens = link, store, workflows, tokens
        self.concurrency, self.lease_s = settings.bulk_concurrency, settings.bulk_lease_s
        self._wait_s = settings.command_timeout_s
        self.holder = new_id()  # this process, as a lease names it
        self._runs: dict[str, tuple[BulkRun, asyncio.Task]] = {}

    def runs(self, bulk_id: str) -> bool:
        """This process runs the bulk now."""
        return bulk_id in self._runs

    def lease(self, now: datetime) -> Lease:
        return {"lease_holder": self.holder, "lease_until": now + timedelta(seconds=self.lease_s)}

    async def start(
        self,
        action: BulkAction,
        query: str,
        body: BulkBody,
        caller: TokenHolder,
        digest: str | None,
        ids: list[str],
    ) -> BulkRecord:
        """Store a new bulk of `ids` and run it; its record as it starts."""
        now = utcnow()
        record = BulkRecord(
            id=new_id(),
            action=action,
            filter=query,
            **body,
            by=caller.name,
            groups=sorted(caller.groups),
            token_digest=digest,
            total=len(ids),
            chunks=math.ceil(len(ids) / IDS_PER_KEY),
            started_at=now,
            **self.lease(now),
        )
        if not ids:
            record = record.model_copy(update={"finished_at": now, "lease_holder": None, "lease_until": None})
        revision = await self.store.create(record, ids)
        if ids:
            self._run(record, revision)
        return record

    def _run(self, record: BulkRecord, revision: int) -> None:
        run = BulkRun(self, record, revision)
        task = asyncio.create_task(run.run(), name=f"bulk-{record.id}")
        self._runs[record.id] = (run, task)
        task.add_done_callback(lambda _: self._runs.pop(record.id, None))

    async def take_over_abandoned(self) -> None:
        """Run every unfinished bulk nobody holds a lease on (its runner died, or stopped): one process wins each."""
        for candidate in await self.store.unfinished():
            if not self._abandoned(candidate):
                continue
            loaded = await self.store.load(candidate.id)
            if loaded is None or not self._abandoned(loaded[0]):
                continue
            record, revision = loaded
            now = utcnow()
            taken = record.model_copy(update=self.lease(now))
            try:
                revision = await self.store.save(taken, revision)
            except LeaseLost:
                continue  # another process took it first
            log.info("bulk %s: taken over at %d of %d", record.id, record.position, record.total)
            self._run(taken, revision)

    def _abandoned(self, record: BulkRecord) -> bool:
        """Unfinished, and run by no one: its lease ran out, or names this process, which does not run it (its run
        stopped on an error)."""
        if record.finished_at is not None or record.id in self._runs:
            return False
        return record.lease_holder == self.holder or not record.leased_at(utcnow())

    def refusal_of_caller(self, bulk: BulkRecord) -> str | None:
        """Why the one who started the bulk may no longer send its commands (their token was revoked or expired, or
        lost the role), as a request of theirs would be refused now; None while they may."""
        if self._tokens is None or bulk.token_digest is None:
            return None
        holder = self._tokens.current().by_digest.get(bulk.token_digest)
        if holder is None:
            return f"stopped: the token {bulk.by} started it with is no longer valid"
        if holder.expires_at is not None and utcnow() >= holder.expires_at:
            return f"stopped: the token {bulk.by} started it with expired at {holder.expires_at.isoformat()}"
        needed = COMMAND_ROLES[bulk.action]
        if holder.roles.isdisjoint(needed):
            return f"stopped: {bulk.by} may no longer {bulk.action}: it takes the role {' or '.join(sorted(needed))}"
        return None

    async def settle(self, bulk: BulkRecord, workflow_id: str) -> BulkRefusal | None:
        """Send the bulk's command to one workflow until it has an outcome: None when applied, else the refusal."""
        command = command_for(bulk, workflow_id)
        pause = RETRY_FIRST_S
        while True:
            try:
                return await self._outcome(command)
            except (NoOutcomeYet, *TRANSIENT) as error:
                log.info(
                    "bulk %s: no outcome for %s yet (%s): sending it again in %.1fs", bulk.id, workflow_id, error, pause
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_LAST_S)

    async def _outcome(self, command: CommandMessage) -> BulkRefusal | None:
        workflow_id = command.workflow_id
        state = await self._workflows.find(workflow_id)
        if state is None:
            reason = f"workflow {workflow_id} not found"
            return BulkRefusal(workflow_id=workflow_id, code="unknown_workflow", reason=reason)
        # Sent before (by a runner that stopped): its outcome stands.
        if command.message_id in state.bookkeeping.applied_commands:
            return _refusal(workflow_id, await self._workflows.recorded_outcome(workflow_id, command.message_id))
        try:
            outcome = await self._workflows.send(command, self._wait_s)
        except CommandRefused as refused:
            return BulkRefusal(workflow_id=workflow_id, code=refused.code, reason=str(refused)[:REASON_KEPT])
        if outcome.state is None:
            raise NoOutcomeYet("no outcome within the wait")
        return None

    async def _keep_taking_over(self) -> None:
        while not self._link.ready:  # noqa: ASYNC110 (the link offers no event to wait on)
            await asyncio.sleep(0.1)
        while True:
            try:
                await self.take_over_abandoned()
            except TRANSIENT as error:
                log.warning("could not look for bulks to take over: %r", error)
            await asyncio.sleep(self.lease_s / 2)

    @asynccontextmanager
    async def lifespan(self, *_: object) -> AsyncIterator[None]:
        """Look for abandoned bulks for as long as the app runs; on the way out, stop this process's runs and release
        their leases, so that another process (or this one restarted) goes on with them at once."""
        looking = asyncio.create_task(self._keep_taking_over(), name="bulk-take-over")
        try:
            yield
        finally:
            runs = list(self._runs.values())
            await cancel_all({looking, *(task for _, task in runs)})
            for run, _task in runs:  # (not `_`: the parameter *_ above)
                await run.release()


class BulkRun:
    """One bulk, run by this process for as long as it holds the lease."""

    def __init__(self, runner: BulkRunner, record: BulkRecord, revision: int) -> None:
        self.runner = runner
        self.record, self.revision = record, revision
        self._saving = asyncio.Lock()  # the record's writes: progress, and the lease renewed meanwhile

    async def save(self, lease: bool = True, **changes: object) -> None:
        """Write the record with `changes` and, unless `lease` is false, the lease renewed."""
        async with self._saving:
            if lease:
                changes |= self.runner.lease(utcnow())
            record = self.record.model_copy(update=changes)
            self.revision = await self.runner.store.save(record, self.revision)
            self.record = record

    async def run(self) -> None:
        bulk_id = self.record.id
        try:
            async with asyncio.TaskGroup() as group:
                keeping = group.create_task(self._keep_lease())
                await self._act_on_all()
                keeping.cancel()
        except* LeaseLost:
            log.warning("bulk %s: another API process took it over: leaving it to that one", bulk_id)
        except* TRANSIENT as errors:
            # A process that can reach NATS (this one, later, or another once the lease ran out) takes it over.
            log.warning("bulk %s: stopped on %r: to be taken over", bulk_id, errors.exceptions)
        except* Exception:
            log.exception("bulk %s: stopped on an error: to be taken over", bulk_id)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.runner.lease_s / 3)
            await self.save()

    async def _act_on_all(self) -> None:
        bulk, runner = self.record, self.runner
        ids = await runner.store.ids(bulk)
        if len(ids) != bulk.total:
            await self.save(lease=False, finished_at=utcnow(), stopped="stopped: its workflows' ids are gone")
            return
        position, done, refused = bulk.position, bulk.done, bulk.refused
        clock = asyncio.get_running_loop().time
        saved_at = clock()
        while position < bulk.total:
            if (stop := runner.refusal_of_caller(bulk)) is not None:
                log.warning("bulk %s: %s", bulk.id, stop)
                await self.save(
                    lease=False,
                    position=position,
                    done=done,
                    refused=refused,
                    finished_at=utcnow(),
                    stopped=stop,
                    lease_holder=None,
                    lease_until=None,
                )
                return
            batch = ids[position : position + runner.concurrency]
            outcomes = await asyncio.gather(*(runner.settle(bulk, workflow_id) for workflow_id in batch))
            refusals = [refusal for refusal in outcomes if refusal is not None]
            for refusal in refusals:
                await runner.store.refuse(bulk.id, refusal)
            position, refused, done = position + len(batch), refused + len(refusals), done + len(batch) - len(refusals)
            if clock() - saved_at >= PROGRESS_EVERY_S and position < bulk.total:
                await self.save(position=position, done=done, refused=refused)
                saved_at = clock()
        await self.save(
            lease=False,
            position=position,
            done=done,
            refused=refused,
            finished_at=utcnow(),
            lease_holder=None,
            lease_until=None,
        )
        log.info("bulk %s: %s done: %d applied, %d refused", bulk.id, bulk.action, done, refused)

    async def release(self) -> None:
        """Give the lease up (the process stops): another process may take the bulk over at once."""
        if self.record.finished_at is not None:
            return
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self.save(lease=False, lease_holder=None, lease_until=None)
        except (LeaseLost, *TRANSIENT) as error:
            log.info("bulk %s: lease not released (%r): it runs out by itself", self.record.id, error)


def _refusal(workflow_id: str, caused: Event | None) -> BulkRefusal | None:
    if isinstance(caused, CommandRejected):
        return BulkRefusal(workflow_id=workflow_id, code=caused.code, reason=caused.reason[:REASON_KEPT])
    return None
