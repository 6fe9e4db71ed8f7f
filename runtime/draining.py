"""A graceful stop for a service's JetStream pull consumer: finish what is in hand, give back what was fetched but
not started.

FastStream's stop waits for the handlers that are running (up to the broker's graceful_timeout), then drops whatever
its fetch loop had taken from the consumer but not yet handed to a handler: a batch fetched while stopping, jobs queued
for a free worker. The server would hold those "ack pending" until their ack_wait ran out, in a process that has gone
(measured: 64 commands, 20 jobs left so by one SIGTERM). So every fetched message is remembered until it is settled,
and on SIGTERM the unsettled ones are nak'd: redelivered at once, to another replica or to the next start. FastStream
offers no hook between its fetch and its handlers, hence the wrapped `fetch`.

FastStream's stop also cancels the fetch in flight and unsubscribes. The broker then drops that pull, but what it had
already sent to it arrives after the unsubscribe, is dropped unread, and is held until the ack wait. So a stop first
lets the fetch in flight end, and then takes what arrived late (`late_deliveries`, which the orchestrator uses too)."""

import asyncio
import logging
import time

from faststream.asgi import AsgiFastStream
from faststream.nats import NatsBroker
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext

log = logging.getLogger(__name__)

# How long a stopping service lets its running handlers finish before they are cancelled (and their messages nak'd):
# the broker's graceful_timeout. Within the launcher's 10 s between SIGTERM and a kill.
GRACEFUL_TIMEOUT_S = 5.0
# How much longer a pull may live at the broker than the client waited for it: the time its request took to arrive
# (a loaded 2-core machine: the rolling-restart test saw a command handed to a stopped orchestrator's last pull).
PULL_OUTLIVES_ITS_WAIT_S = 0.25


async def late_deliveries(nc: Client, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
    """What the broker sent to this subscription's pulls after this side stopped waiting for them: nats-py has a pull
    run out at the broker 0.1 ms before its own wait ends, but the broker counts from when the pull reached it, so on
    a busy machine a pull outlives the client's wait by however long the request took to arrive, and a message sent
    then arrives after `fetch` returned. Unsubscribing would drop it unread (held by the broker until the ack wait).
    So: let such a pull run out (PULL_OUTLIVES_ITS_WAIT_S), then after a round trip it has all arrived. Read off the
    pull's inbox, not fetched: a fetch would open another pull."""
    await asyncio.sleep(PULL_OUTLIVES_ITS_WAIT_S)
    await nc.flush()
    late = []
    while subscription.pending_msgs:
        message = await subscription._sub.next_msg(timeout=1.0)  # (nats-py's PullSubscription has no public reader)
        if not JetStreamContext.is_status_msg(message):  # a pull's end: no messages, or it ran out
            late.append(message)
    return late


class FetchedMessages:
    """The messages a pull subscription handed to this process that are still this process's to settle."""

    def __init__(self, ack_wait_s: float) -> None:
        self.ack_wait_s = ack_wait_s
        self._held: list[tuple[float, Msg]] = []  # (when fetched, message)
        self._stopping = False
        self._not_fetching = asyncio.Event()
        self._not_fetching.set()
        self._subscription = None

    def watch(self, subscription) -> None:
        """Remember every message `subscription.fetch` returns (FastStream's fetch loop calls it)."""
        self._subscription = subscription
        fetch = subscription.fetch

        async def fetch_and_remember(*args, **kwargs) -> list[Msg]:
            if self._stopping:
                await asyncio.Future()  # asks the broker for nothing more: waits here until the stop cancels the loop
            self._not_fetching.clear()
            try:
                messages = await fetch(*args, **kwargs)
            except TimeoutError as timeout:
                # nats-py 2.16 also raises the builtin TimeoutError, where FastStream 0.7 catches only nats-py's own:
                # its fetch loop died on it, dropping a half-filled batch (redelivered after ack_wait), and restarted.
                if isinstance(timeout, NatsTimeoutError):
                    raise
                raise NatsTimeoutError from timeout
            finally:
                self._not_fetching.set()
            self._remember(messages)
            return messages

        subscription.fetch = fetch_and_remember

    async def stop_fetching(self, nc: Client, within_s: float) -> None:
        """Let the fetch in flight end (within `within_s`, a pull's timeout), ask for nothing more, and remember what
        arrived too late for it."""
        self._stopping = True
        await asyncio.wait_for(self._not_fetching.wait(), within_s)
        if self._subscription is not None:
            self._remember(await late_deliveries(nc, self._subscription))

    def _remember(self, messages: list[Msg]) -> None:
        now = time.monotonic()
        self._held = self._still_ours(now) + [(now, message) for message in messages]

    def _still_ours(self, now: float) -> list[tuple[float, Msg]]:
        """Unsettled, and fetched less than ack_wait ago: older ones the server has handed to another consumer, and a
        nak would take them from it. (A handler that runs longer, heartbeating, settles its message itself.)"""
        return [(at, message) for at, message in self._held if not message.is_acked and now - at < self.ack_wait_s]

    async def give_back(self) -> int:
        """Nak every message still ours, so the server redelivers it now. How many there were."""
        ours = self._still_ours(time.monotonic())
        for _, message in ours:
            await message.nak()
        self._held = []
        return len(ours)


def drain_on_shutdown(app: AsgiFastStream, subscriber, ack_wait_s: float, name: str) -> None:
    """On SIGTERM, before the broker closes: let `subscriber`'s fetch in flight end, stop it (FastStream lets the
    running handlers finish, up to the broker's graceful_timeout), then nak what it fetched and did not handle."""
    fetched = FetchedMessages(ack_wait_s)

    @app.after_startup
    async def remember_fetched() -> None:
        fetched.watch(subscriber.subscription)

    @app.on_shutdown
    async def drain() -> None:
        assert isinstance(app.broker, NatsBroker), "drains a NATS subscriber"
        try:
            await fetched.stop_fetching(app.broker.connection, subscriber.pull_sub.timeout + 1)
        except Exception:  # the broker unreachable: what it sent late is held until the ack wait
            log.exception("%s could not take the messages sent to its last pull", name)
        await subscriber.stop()
        given_back = await fetched.give_back()
        log.info("%s stopped consuming; gave back %d fetched message(s) it had not handled", name, given_back)
