"""The orchestrator's pull loop on the commands consumer: take whatever is waiting, apply it, ask again.

FastStream's batch subscriber gathers a batch until it is full or its window closes, so every command waited for the
window (20 ms: most of the latency at 200 commands/s), and an idle orchestrator polled 50 times a second. Here one
long poll waits for the first command, which is started at once while a second, short pull takes whatever else is
already waiting; batches grow with the load by themselves.

Commands are applied as they are fetched, while the loop already asks for more (up to MAX_IN_FLIGHT at once): waiting
for a whole batch to be applied before fetching the next left the orchestrator idle a third of the time under load.
One workflow's commands are still applied one after another, in the order they were delivered."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext

from runtime.draining import late_deliveries
from runtime.streams import UNAVAILABLE

log = logging.getLogger(__name__)

LONG_POLL_S = 1.0  # how long one pull request waits for a first command (and a stop, at most, for it to end)
WAITING_POLL_S = 0.002  # how long the pull for the rest waits: they are either there already or the next fetch's
MAX_BATCH = 64
MAX_IN_FLIGHT = 256  # commands being applied at once
RETRY_S = 0.2  # after the broker could not be asked
REDELIVER_AFTER_S = 1.0  # a command that failed for now, and the later ones of its workflow


class CommandConsumer:
    def __init__(
        self,
        nc: Client,
        subscription: JetStreamContext.PullSubscription,
        apply: Callable[[Msg], Awaitable[bool]],
        workflow_of: Callable[[str], str],
    ):
        """`apply` acks a command and says True, or says False when it failed for now (it is then redelivered)."""
        self.nc, self.subscription, self.apply, self.workflow_of = nc, subscription, apply, workflow_of
        self.task: asyncio.Task | None = None
        self.stopping = False
        self.unapplied: list[Msg] = []  # fetched as it was stopping
        self.in_flight: set[asyncio.Task[bool]] = set()
        self.latest: dict[str, asyncio.Task[bool]] = {}  # each workflow's last command in flight

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="command-consumer")

    async def stop(self) -> int:
        """Stop asking for commands, finish applying those in flight, and give back (nak, for another replica or the
        next start) what was fetched and not applied. How many were given back."""
        self.stopping = True
        if self.task:
            # The pull in flight is let run out (LONG_POLL_S at most): cancelled here, it would stay open at the
            # broker, which would then hand a command to a process no longer listening (held until the ack wait).
            ended, _ = await asyncio.wait([self.task], timeout=LONG_POLL_S + 1)
            if not ended:
                self.task.cancel()
                await asyncio.wait([self.task], timeout=1)
        if self.in_flight:
            await asyncio.wait(self.in_flight)
        try:
            late = await late_deliveries(self.nc, self.subscription)
        except Exception:  # the broker unreachable: what it sent late is held until the ack wait
            log.exception("could not take the commands sent to the last pull")
            late = []
        unapplied = self.unapplied + late
        for message in unapplied:
            await message.nak()
        await self.subscription.unsubscribe()  # else closing the connection waits on its pull for good
        return len(unapplied)

    async def _run(self) -> None:
        while not self.stopping:
            if len(self.in_flight) >= MAX_IN_FLIGHT:
                await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            room = min(MAX_BATCH, MAX_IN_FLIGHT - len(self.in_flight))
            # The first command is started before asking for the rest: that takes a round trip and a short wait.
            first = await self._fetch(1, LONG_POLL_S)
            if not self._take(first):
                return
            if first and room > 1 and not self._take(await self._fetch(room - 1, WAITING_POLL_S)):
                return

    def _take(self, batch: list[Msg]) -> bool:
        """Start applying what was fetched; once stopping, keep it to give back instead, and say so (False)."""
        if self.stopping:
            self.unapplied = batch
            return False
        for message in batch:
            self._start(message)
        return True

    def _start(self, message: Msg) -> None:
        """Apply it now, or once the command before it of its workflow is done. Applied whole even when stopping:
        every command fetched is acked or nak'd, never left held."""
        workflow_id = self.workflow_of(message.subject)
        task = asyncio.create_task(self._apply_after(self.latest.get(workflow_id), message))
        self.in_flight.add(task)
        self.latest[workflow_id] = task

        def done(_: asyncio.Task) -> None:
            self.in_flight.discard(task)
            if self.latest.get(workflow_id) is task:
                del self.latest[workflow_id]

        task.add_done_callback(done)

    async def _apply_after(self, previous: asyncio.Task[bool] | None, message: Msg) -> bool:
        # When the one before failed, this one is redelivered too, so that they still come in order.
        try:
            applied = (previous is None or await previous) and await self.apply(message)
        except Exception:  # apply answers False itself; this is the broker failing its ack
            log.exception("a command on %s was not settled; it is to be redelivered", message.subject)
            applied = False
        if not applied:
            try:
                await message.nak(delay=REDELIVER_AFTER_S)
            except Exception:  # not acked either way: the ack wait redelivers it
                log.warning("could not nak a command on %s; it is redelivered after the ack wait", message.subject)
        return applied

    async def _fetch(self, count: int, timeout_s: float) -> list[Msg]:
        try:
            return await self.subscription.fetch(count, timeout=timeout_s)
        except (TimeoutError, NatsTimeoutError):
            return []  # nothing waiting
        except (*UNAVAILABLE, ConnectionClosedError) as error:
            log.info("cannot fetch commands for now (%s): asking again", type(error).__name__)
            await asyncio.sleep(RETRY_S)  # the client reconnects meanwhile
            return []
        except Exception:  # an answer nats-py does not expect must not end the loop for good
            log.exception("a fetch of commands failed: asking again")
            await asyncio.sleep(RETRY_S)
            return []
