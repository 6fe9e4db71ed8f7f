"""A graceful stop for a service's JetStream pull consumer: finish what is in hand, give back what was fetched but
not started.

FastStream's stop waits for the handlers that are running (up to the broker's graceful_timeout), then drops whatever
its fetch loop had taken from the consumer but not yet handed to a handler: a batch fetched while stopping, jobs queued
for a free worker. The server would hold those "ack pending" until their ack_wait ran out, in a process that has gone
(measured: 64 commands, 20 jobs left so by one SIGTERM). So every fetched message is remembered until it is settled,
and on SIGTERM the unsettled ones are nak'd: redelivered at once, to another replica or to the next start. FastStream
offers no hook between its fetch and its handlers, hence the wrapped `fetch`."""

import asyncio
import logging
import time

from faststream.asgi import AsgiFastStream
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

log = logging.getLogger(__name__)

# How long a stopping service lets its running handlers finish before they are cancelled (and their messages nak'd):
# the broker's graceful_timeout. Within the launcher's 10 s between SIGTERM and a kill.
GRACEFUL_TIMEOUT_S = 5.0


class FetchedMessages:
    """The messages a pull subscription handed to this process that are still this process's to settle."""

    def __init__(self, ack_wait_s: float) -> None:
        self.ack_wait_s = ack_wait_s
        self._held: list[tuple[float, Msg]] = []  # (when fetched, message)

    def watch(self, subscription) -> None:
        """Remember every message `subscription.fetch` returns (FastStream's fetch loop calls it)."""
        fetch = subscription.fetch

        async def fetch_and_remember(*args, **kwargs) -> list[Msg]:
            try:
                messages = await fetch(*args, **kwargs)
            except asyncio.TimeoutError as timeout:
                # nats-py 2.16 also raises the builtin TimeoutError, where FastStream 0.7 catches only nats-py's own:
                # its fetch loop died on it, dropping a half-filled batch (redelivered after ack_wait), and restarted.
                if isinstance(timeout, NatsTimeoutError):
                    raise
                raise NatsTimeoutError from timeout
            now = time.monotonic()
            self._held = self._still_ours(now) + [(now, message) for message in messages]
            return messages

        subscription.fetch = fetch_and_remember

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
    """On SIGTERM, before the broker closes: stop `subscriber` (FastStream lets the running handlers finish, up to the
    broker's graceful_timeout), then nak what it fetched and did not handle."""
    fetched = FetchedMessages(ack_wait_s)

    @app.after_startup
    async def remember_fetched() -> None:
        fetched.watch(subscriber.subscription)

    @app.on_shutdown
    async def drain() -> None:
        await subscriber.stop()
        given_back = await fetched.give_back()
        log.info("%s stopped consuming; gave back %d fetched message(s) it had not handled", name, given_back)
