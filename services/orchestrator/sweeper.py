"""Commands the consumer passed over: found in the work queue, dead-lettered and removed.

nats-server 2.15 stores a message whose subject's last token is DEL (0x7f), and when it comes in while the
orchestrator's pull request is waiting, never delivers it: the consumer's ack floor moves past it, and it would stay in
the work queue for good, neither applied nor dead-lettered (found by fuzzing: docs/decisions/0011).

Below the consumer's ack floor every message on an inbound subject has been acked, and so removed from the work queue:
what is still stored there is either a timer's schedule (the consumer does not take those) or a message passed over.
The sweeper reads the stream by sequence, from where it stopped to the ack floor, a bounded stretch at a time, and
keeps each message passed over as a dead letter, then removes it."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.topology import ORCHESTRATOR_CONSUMER, Topology

log = logging.getLogger("orchestrator")

SWEEP_EVERY_S = 30.0
MAX_READS_PER_SWEEP = 1000  # a stream holding many timers is read over several sweeps
PASSED_OVER = "never delivered to the orchestrator: the broker's consumer passed over its subject"


class Stored(NamedTuple):
    sequence: int
    subject: str
    data: bytes


class PassedOverSweeper:
    def __init__(
        self,
        js: JetStreamContext,
        topology: Topology,
        keep: Callable[[str, bytes, int, str], Awaitable[bool]],
    ) -> None:
        """`keep(subject, data, stream sequence, reason)` keeps a dead letter, and says False when it could not."""
        self.js, self.topology, self.keep = js, topology, keep
        self.swept_to = 0  # the stream sequence read up to

    async def run(self, every_s: float = SWEEP_EVERY_S) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sweep()
            except Exception as error:  # the next round tries again
                log.warning("could not sweep the commands stream: %s: %s", type(error).__name__, error)

    async def sweep(self) -> int:
        """Read on up to the consumer's ack floor (at most MAX_READS_PER_SWEEP messages); keep each message passed
        over as a dead letter and remove it. How many it found."""
        stream = self.topology.commands_stream
        ack_floor = (await self.js.consumer_info(stream, ORCHESTRATOR_CONSUMER)).ack_floor
        assert ack_floor is not None  # the server always sends it; nats-py types it optional
        floor = ack_floor.stream_seq
        found = 0
        for _ in range(MAX_READS_PER_SWEEP):
            message = await self._stored_after(self.swept_to) if self.swept_to < floor else None
            if message is None or message.sequence > floor:
                self.swept_to = max(self.swept_to, floor)
                break
            if self.topology.is_inbound(message.subject):
                if not await self.keep(message.subject, message.data, message.sequence, PASSED_OVER):
                    break  # read again next time
                await self.js.delete_msg(stream, message.sequence)
                found += 1
            self.swept_to = message.sequence
        return found

    async def _stored_after(self, sequence: int) -> Stored | None:
        try:
            # `>`: the subject filter that finds the messages the consumer's own filter passed over.
            message = await self.js.get_msg(self.topology.commands_stream, seq=sequence + 1, next=True, subject=">")
        except NotFoundError:
            return None
        assert message.seq is not None and message.subject is not None  # always sent; nats-py types them optional
        return Stored(message.seq, message.subject, message.data or b"")
