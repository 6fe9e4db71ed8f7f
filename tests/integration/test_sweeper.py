"""Commands the broker's consumer passes over are found below its ack floor, dead-lettered and removed; timers'
schedules, stored in the same stream, are left alone. (A message on a subject whose last token is DEL, published to an
empty stream while a pull request waits, is one nats-server 2.15.1 passes over.)"""

import asyncio

import pytest

from contracts.topology import ORCHESTRATOR_CONSUMER
from services.orchestrator import sweeper
from services.orchestrator.sweeper import PASSED_OVER, PassedOverSweeper
from tests.conftest import a_pull_waits, eventually

pytestmark = [pytest.mark.integration, pytest.mark.malformed_messages]  # on purpose: placeholders and bad input

PASSED_OVER_TOKEN = "\x7f"  # a subject's last token nats-server 2.15 does not hand to a waiting pull request


class Kept:
    def __init__(self, refuse: bool = False) -> None:
        self.letters: list[tuple[str, bytes, int, str]] = []
        self.refuse = refuse

    async def __call__(self, subject: str, data: bytes, sequence: int, reason: str) -> bool:
        if self.refuse:
            return False
        self.letters.append((subject, data, sequence, reason))
        return True


async def pass_one_over(js, topology, timers: int = 0) -> int:
    """A waiting pull request on an empty stream, then a message it does not get, `timers` schedules, and a message
    it gets (acked): the ack floor moves past the first. Its stream sequence."""
    await js.add_consumer(topology.commands_stream, topology.orchestrator_consumer())
    subscription = await js.pull_subscribe_bind(ORCHESTRATOR_CONSUMER, topology.commands_stream)
    waiting = asyncio.create_task(subscription.fetch(1, timeout=5))
    await a_pull_waits(js, topology.commands_stream, ORCHESTRATOR_CONSUMER)
    passed_over = await js.publish(topology.commands_subject(PASSED_OVER_TOKEN), b"passed over")
    for visit in range(timers):
        headers = {"Nats-Schedule": "@at 2099-01-01T00:00:00Z", "Nats-Schedule-Target": topology.fired_subject("w1")}
        await js.publish(topology.timer_subject("w1", f"deadline-{visit}"), b"{}", headers=headers)
    await js.publish(topology.commands_subject("w1"), b"taken")
    taken = await waiting
    assert [message.data for message in taken] == [b"taken"], "the broker delivered it: nothing is passed over"
    await taken[0].ack()

    async def floor_moved() -> bool:
        info = await js.consumer_info(topology.commands_stream, ORCHESTRATOR_CONSUMER)
        return info.ack_floor.stream_seq > passed_over.seq + timers

    await eventually(floor_moved)
    return passed_over.seq


async def test_a_command_passed_over_is_dead_lettered_and_removed_and_timers_stay(js, topology):
    passed_over = await pass_one_over(js, topology, timers=1)
    kept = Kept()
    sweeping = PassedOverSweeper(js, topology, kept)

    assert await sweeping.sweep() == 1
    assert kept.letters == [(topology.commands_subject(PASSED_OVER_TOKEN), b"passed over", passed_over, PASSED_OVER)]
    left = await js.get_msg(topology.commands_stream, seq=passed_over, next=True, subject=">")
    assert left.subject == topology.timer_subject("w1", "deadline-0")
    assert (await js.stream_info(topology.commands_stream)).state.messages == 1  # the timer alone
    assert await sweeping.sweep() == 0 and len(kept.letters) == 1  # it reads on from where it stopped


async def test_a_command_that_could_not_be_kept_stays_and_is_kept_at_the_next_sweep(js, topology):
    passed_over = await pass_one_over(js, topology)
    refused = PassedOverSweeper(js, topology, Kept(refuse=True))
    assert await refused.sweep() == 0
    assert (await js.get_msg(topology.commands_stream, seq=passed_over)).data == b"passed over"

    refused.keep = kept = Kept()
    assert await refused.sweep() == 1 and [letter[2] for letter in kept.letters] == [passed_over]


async def test_a_sweep_reads_a_bounded_stretch_and_the_next_reads_on(js, topology, monkeypatch):
    monkeypatch.setattr(sweeper, "MAX_READS_PER_SWEEP", 2)
    passed_over = await pass_one_over(js, topology, timers=3)
    kept = Kept()
    sweeping = PassedOverSweeper(js, topology, kept)

    assert await sweeping.sweep() == 1  # the message passed over, and a timer
    assert sweeping.swept_to == passed_over + 1
    assert await sweeping.sweep() == 0  # two timers
    assert await sweeping.sweep() == 0  # nothing left below the floor
    assert [letter[2] for letter in kept.letters] == [passed_over]
    assert (await js.stream_info(topology.commands_stream)).state.messages == 3
