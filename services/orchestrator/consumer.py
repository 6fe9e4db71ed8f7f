"""The orchestrator's pull loop on the commands consumer: take whatever is waiting, apply it, ask again.

FastStream's batch subscriber gathers a batch until it is full or its window closes, so every command waited for the
window (20 ms: most of the latency at 200 commands/s), and an idle orchestrator polled 50 times a second. Here one
long poll waits for the first command and returns with it at once, together with whatever else is already waiting;
batches grow with the load by themselves, since the commands that arrive while one batch is applied are the next."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext

from contracts.topology import UNAVAILABLE

log = logging.getLogger(__name__)

LONG_POLL_S = 5.0  # how long one pull request waits for a first command
WAITING_POLL_S = 0.002  # how long the pull for the rest waits: they are either there already or the next batch's
MAX_BATCH = 64
RETRY_S = 0.2  # after the broker could not be asked


class CommandConsumer:
    def __init__(self, subscription: JetStreamContext.PullSubscription, apply: Callable[[list[Msg]], Awaitable[None]]):
        self.subscription, self.apply = subscription, apply
        self.task: asyncio.Task | None = None
        self.applying: asyncio.Future | None = None
        self.stopping = False
        self.unapplied: list[Msg] = []  # fetched as it was stopping

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="command-consumer")

    async def stop(self) -> int:
        """Stop asking for commands, finish the batch being applied, and give back (nak, for another replica or the
        next start) what was fetched and not applied. How many were given back."""
        self.stopping = True
        if self.task:
            self.task.cancel()  # nats-py's fetch may swallow it: the flag ends the loop then, at the latest
            await asyncio.wait([self.task], timeout=LONG_POLL_S + 1)
        if self.applying:
            await asyncio.gather(self.applying, return_exceptions=True)
        # A pull that timed out on this side may still have been answered: those commands wait here, unapplied.
        unapplied = self.unapplied + await self._fetch(MAX_BATCH, WAITING_POLL_S * 10)
        for message in unapplied:
            await message.nak()
        await self.subscription.unsubscribe()  # else closing the connection waits on its pull for good
        return len(unapplied)

    async def _run(self) -> None:
        while not self.stopping:
            batch = await self._next_batch()
            if self.stopping:
                self.unapplied = batch
            elif batch:
                # Applied whole even when stopping: every command fetched is acked or nak'd, never left held.
                self.applying = asyncio.ensure_future(self.apply(batch))
                await asyncio.shield(self.applying)

    async def _next_batch(self) -> list[Msg]:
        if first := await self._fetch(1, LONG_POLL_S):
            return first + await self._fetch(MAX_BATCH - 1, WAITING_POLL_S)
        return []

    async def _fetch(self, count: int, timeout_s: float) -> list[Msg]:
        try:
            return await self.subscription.fetch(count, timeout=timeout_s)
        except (NatsTimeoutError, asyncio.TimeoutError):
            return []  # nothing waiting
        except (*UNAVAILABLE, ConnectionClosedError) as error:
            log.info("cannot fetch commands for now (%s): asking again", type(error).__name__)
            await asyncio.sleep(RETRY_S)  # the client reconnects meanwhile
            return []
