"""Retention: ended workflows older than WF_RETENTION_DAYS leave the system, their whole log kept as an export.

For each one, in this order: its log, byte for byte as stored (one event per line, what contracts/chain.py verifies),
goes to the exports object store as `<workflow id>.jsonl`; then its subject is purged from the events stream; then
its key from the read model (which the indexer follows, so its row leaves the index too). A crash between the steps
is finished by the next sweep: an export that exists is never written again (the log may be gone by then), so nothing
is lost. The API answers 410 for a removed workflow, with where its export is."""

import asyncio
import logging
from datetime import datetime, timedelta

from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.state import WorkflowState
from contracts.topology import Topology, export_name
from runtime.eventlog import current_entries, read_stored

log = logging.getLogger("orchestrator")

RETENTION_EVERY_S = 3600.0


class Retention:
    def __init__(self, js: JetStreamContext, topology: Topology, days: float) -> None:
        self.js, self.topology, self.kept_for = js, topology, timedelta(days=days)

    async def run(self, every_s: float, clock) -> None:
        """Sweep every `every_s` (the first at once) until cancelled."""
        while True:
            try:
                removed = await self.sweep(clock())
                if removed:
                    log.info("retention: %d ended workflow(s) exported and removed", removed)
            except Exception as error:  # the next round tries again
                log.warning("retention sweep failed: %s: %s", type(error).__name__, error)
            await asyncio.sleep(every_s)

    async def sweep(self, now: datetime) -> int:
        """Export and remove every workflow that ended before `now` minus the retention period. How many."""
        removed = 0
        for state in await self._ended_before(now - self.kept_for):
            await self.remove(state.id)
            removed += 1
        return removed

    async def remove(self, workflow_id: str) -> None:
        exports = await self.js.object_store(self.topology.exports_bucket)
        name = export_name(workflow_id)
        try:
            await exports.get_info(name)
        except NotFoundError:
            stored = await read_stored(self.js, self.topology, workflow_id)
            await exports.put(name, b"".join(data + b"\n" for _, data in stored))
        await self.js.purge_stream(self.topology.events_stream, subject=self.topology.events_subject(workflow_id))
        await (await self.js.key_value(self.topology.state_bucket)).purge(workflow_id)

    async def _ended_before(self, cutoff: datetime) -> list[WorkflowState]:
        """The read model's workflows that have ended and not changed since `cutoff` (one pass over its keys)."""
        states = [
            WorkflowState.model_validate_json(data)
            for data in (await current_entries(self.js, self.topology, self.topology.state_bucket)).values()
        ]
        return [
            state
            for state in states
            if state.exists and state.updated_at and state.updated_at < cutoff and state.has_ended
        ]
