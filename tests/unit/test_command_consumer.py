"""The orchestrator's pull loop: commands applied as they come, one workflow's in order, others at once."""

import asyncio

from services.orchestrator import consumer as consumer_module
from services.orchestrator.consumer import CommandConsumer


class Command:
    def __init__(self, workflow_id: str, number: int) -> None:
        self.subject, self.name = f"wf.commands.{workflow_id}", f"{workflow_id}/{number}"
        self.naks: list[float | None] = []

    async def nak(self, delay: float | None = None) -> None:
        self.naks.append(delay)


class Subscription:
    """Hands out the scripted fetches, then nothing."""

    def __init__(self, *fetches: list[Command]) -> None:
        self.fetches = list(fetches)
        self.unsubscribed = False
        self.pending_msgs = 0  # nothing arrives after a fetch has returned

    async def fetch(self, count: int, timeout: float):
        if not self.fetches:
            await asyncio.sleep(timeout)
            raise TimeoutError
        batch, self.fetches[0] = self.fetches[0][:count], self.fetches[0][count:]
        if not self.fetches[0]:
            self.fetches.pop(0)
        return batch

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


class Connection:
    async def flush(self) -> None:
        pass


def workflow_of(subject: str) -> str:
    return subject.rsplit(".", 1)[1]


async def run(subscription: Subscription, apply, settle_s: float = 0.2) -> CommandConsumer:
    # Stand-ins for nats-py's Client and PullSubscription, with just what the loop uses of them.
    consumer = CommandConsumer(Connection(), subscription, apply, workflow_of)  # pyright: ignore[reportArgumentType]
    consumer.start()
    await asyncio.sleep(settle_s)
    await consumer.stop()
    return consumer


async def test_one_workflows_commands_in_order_others_at_once(monkeypatch):
    monkeypatch.setattr(consumer_module, "LONG_POLL_S", 0.05)
    started, finished, running, most = [], [], set(), 0

    async def apply(command: Command) -> bool:
        nonlocal most
        started.append(command.name)
        running.add(command.name)
        most = max(most, len(running))
        await asyncio.sleep(0.02)
        running.discard(command.name)
        finished.append(command.name)
        return True

    # Workflow a's second command comes in a later fetch, while its first is still being applied.
    subscription = Subscription([Command("a", 1), Command("b", 1)], [Command("a", 2), Command("c", 1)])
    await run(subscription, apply)
    assert finished.index("a/1") < started.index("a/2")
    assert most >= 3  # a/1, b/1 and c/1 at once: the second fetch did not wait for the first to be applied
    assert sorted(finished) == ["a/1", "a/2", "b/1", "c/1"] and subscription.unsubscribed


async def test_the_first_command_is_applied_while_the_rest_are_fetched(monkeypatch):
    monkeypatch.setattr(consumer_module, "LONG_POLL_S", 0.05)
    seen = []

    class SlowForTheRest(Subscription):
        async def fetch(self, count: int, timeout: float):
            if count == 1:
                return await super().fetch(count, timeout)
            await asyncio.sleep(0.05)  # the round trip and the short wait for whatever else is there
            seen.append("the rest fetched")
            return await super().fetch(count, timeout)

    async def apply(command: Command) -> bool:
        seen.append(command.name)
        return True

    await run(SlowForTheRest([Command("a", 1), Command("b", 1)]), apply)
    assert seen[:3] == ["a/1", "the rest fetched", "b/1"]


async def test_a_command_that_fails_for_now_takes_the_later_ones_of_its_workflow_with_it(monkeypatch):
    monkeypatch.setattr(consumer_module, "LONG_POLL_S", 0.05)
    applied = []

    async def apply(command: Command) -> bool:
        await asyncio.sleep(0.01)
        if command.name == "a/1":
            return False
        applied.append(command.name)
        return True

    commands = [Command("a", 1), Command("a", 2), Command("b", 1), Command("a", 3)]
    await run(Subscription(commands), apply)
    assert applied == ["b/1"]
    assert [command.naks for command in commands] == [[1.0], [1.0], [], [1.0]]


async def test_stop_finishes_what_is_in_flight(monkeypatch):
    monkeypatch.setattr(consumer_module, "LONG_POLL_S", 0.05)
    applied = []

    async def apply(command: Command) -> bool:
        await asyncio.sleep(0.3)  # still running when stop is asked for
        applied.append(command.name)
        return True

    await run(Subscription([Command("a", 1), Command("b", 1)]), apply, settle_s=0.05)
    assert sorted(applied) == ["a/1", "b/1"]


async def test_a_fetch_failing_in_a_way_nobody_expected_does_not_end_the_loop(monkeypatch):
    monkeypatch.setattr(consumer_module, "LONG_POLL_S", 0.05)
    monkeypatch.setattr(consumer_module, "RETRY_S", 0.01)
    applied = []

    class FailingOnce(Subscription):
        failed = False

        async def fetch(self, count: int, timeout: float):
            if not self.failed:
                self.failed = True
                raise RuntimeError("an answer nats-py did not expect")
            return await super().fetch(count, timeout)

    async def apply(command: Command) -> bool:
        applied.append(command.name)
        return True

    await run(FailingOnce([Command("a", 1)]), apply)
    assert applied == ["a/1"]
