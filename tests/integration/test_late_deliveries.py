"""A stopping consumer leaves nothing held. nats-py has a pull run out at the broker 0.1 ms before its own wait ends,
so a message the broker sends just then arrives after `fetch` has returned, and unsubscribing drops it unread: the
broker holds it until the ack wait (seen as the rolling-restart test's one failure, for both services). Here the
broker is made to answer a pull nobody waits for any more, as the stop begins, and the stop must give that message
back (nak: redelivered at once)."""

import asyncio
import json
from dataclasses import replace

import pytest

from contracts.topology import ORCHESTRATOR_CONSUMER, PROCESSOR_CONSUMER
from runtime.draining import FetchedMessages
from services.orchestrator.consumer import CommandConsumer
from tests.conftest import a_pull_waits, eventually

pytestmark = [pytest.mark.integration, pytest.mark.malformed_messages]  # on purpose: placeholders and bad input


def answer_the_last_pull_too_late(nc, js, subscription, subject: str, stopping) -> asyncio.Future:
    """Wrap the subscription's fetch: as the first fetch once `stopping()` holds ends, a message is published and the
    broker hands it to a pull on the subscription's inbox that no fetch waits for. Done once it has arrived."""
    fetch, late = subscription.fetch, asyncio.get_running_loop().create_future()

    async def arrived() -> bool:
        # The message itself: the pull that just ran out may have left its end (a status message) there too.
        return any(
            not js.is_status_msg(message)
            for message in subscription._sub._pending_queue._queue  # (no public peek)
        )

    async def fetch_then_answer_too_late(*args, **kwargs):
        try:
            return await fetch(*args, **kwargs)
        finally:
            if stopping() and not late.done():
                await js.publish(subject, b"{}")
                request = json.dumps({"batch": 1, "no_wait": True}).encode()
                await nc.publish(subscription._nms, request, reply=subscription._deliver)  # (its own pull subject)
                late.set_result(await eventually(arrived, timeout_s=5))

    subscription.fetch = fetch_then_answer_too_late
    return late


ACK_WAIT_S = 30  # far longer than the test: a message no longer held was given back, not let run out


async def redelivered_at_once(js, stream: str, durable: str) -> list[int]:
    """What the consumer hands out again now (each message's delivery count): a message given back, not one held."""
    subscription = await js.pull_subscribe_bind(durable, stream)
    try:
        messages = await subscription.fetch(10, timeout=1.0)
    except TimeoutError:
        messages = []
    for message in messages:
        await message.ack()
    await subscription.unsubscribe()
    return [message.metadata.num_delivered for message in messages]


async def test_the_orchestrators_consumer_gives_back_what_reached_it_after_its_last_pull(nc, js, topology):
    stream = topology.commands_stream
    await js.add_consumer(stream, replace(topology.orchestrator_consumer(), ack_wait=ACK_WAIT_S))
    subscription = await js.pull_subscribe_bind(ORCHESTRATOR_CONSUMER, stream)
    applied = []

    async def apply(message) -> bool:
        applied.append(message)
        await message.ack()
        return True

    consumer = CommandConsumer(nc, subscription, apply, topology.workflow_id_of)
    subject = topology.subject_for("create", "wf-late")
    late = answer_the_last_pull_too_late(nc, js, subscription, subject, stopping=lambda: consumer.stopping)
    consumer.start()
    await a_pull_waits(js, stream, ORCHESTRATOR_CONSUMER)  # its long poll

    assert await consumer.stop() == 1  # the late command, given back
    assert late.done() and applied == []
    assert await redelivered_at_once(js, stream, ORCHESTRATOR_CONSUMER) == [2]


async def test_the_processors_stop_takes_what_reached_it_after_its_last_pull(nc, js, topology):
    stream = topology.jobs_stream
    await js.add_consumer(stream, replace(topology.processor_consumer(), ack_wait=ACK_WAIT_S))
    subscription = await js.pull_subscribe_bind(PROCESSOR_CONSUMER, stream)
    fetched = FetchedMessages(ack_wait_s=ACK_WAIT_S)
    subject = topology.jobs_subject("t", "s")
    late = answer_the_last_pull_too_late(nc, js, subscription, subject, stopping=lambda: fetched._stopping)
    fetched.watch(subscription)

    async def fetch_loop() -> None:  # as FastStream's: fetch, and fetch again
        while True:
            try:
                await subscription.fetch(16, timeout=1.0)
            except TimeoutError:
                pass

    loop = asyncio.create_task(fetch_loop())
    await a_pull_waits(js, stream, PROCESSOR_CONSUMER)
    await fetched.stop_fetching(nc, within_s=2)  # the pull in flight runs out; nothing more is asked for
    assert late.done() and not loop.done()
    loop.cancel()

    assert await fetched.give_back() == 1
    await subscription.unsubscribe()
    assert await redelivered_at_once(js, stream, PROCESSOR_CONSUMER) == [2]
