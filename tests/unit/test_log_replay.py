"""The broadcaster's log replay against a stand-in for the broker: how many pages it reads at once, and what each
replay yields. The replay against a real nats-server, with its seam to the live feed: test_broadcaster.py."""

import asyncio
from types import SimpleNamespace

from contracts.events import WorkflowCreated
from contracts.topology import Topology
from services.broadcaster.replay import LogReplay


class StandInJetStream:
    """Just what LogReplay uses of nats-py's JetStreamContext, over a log of `size` events of workflow `w{n % 3}`.
    Each fetch lets the other tasks run before it answers, so replays that may overlap do."""

    def __init__(self, size: int) -> None:
        self.log = [(sequence, f"w{sequence % 3}") for sequence in range(1, size + 1)]
        self.reading = self.most_reading = 0
        self.consumers: set[str] = set()
        self.wanted_by: dict[str, list[tuple[int, str]]] = {}

    async def stream_info(self, stream: str) -> SimpleNamespace:
        return SimpleNamespace(state=SimpleNamespace(last_seq=len(self.log)))

    async def add_consumer(self, stream: str, config) -> SimpleNamespace:
        name = f"replay-{len(self.consumers)}-{id(config)}"
        self.consumers.add(name)
        wanted = [entry for entry in self.log if self._matches(entry, config)]
        self.wanted_by[name] = wanted
        return SimpleNamespace(name=name, num_pending=len(wanted))

    @staticmethod
    def _matches(entry: tuple[int, str], config) -> bool:
        sequence, workflow_id = entry
        return sequence >= config.opt_start_seq and config.filter_subject.split(".")[-1] in ("*", workflow_id)

    async def pull_subscribe_bind(self, consumer: str, stream: str) -> "StandInSubscription":
        return StandInSubscription(self, self.wanted_by[consumer])

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        self.consumers.remove(consumer)
        return True


class StandInSubscription:
    def __init__(self, js: StandInJetStream, wanted: list[tuple[int, str]]) -> None:
        self.js, self.wanted = js, list(wanted)

    async def fetch(self, batch: int, timeout: float) -> list[SimpleNamespace]:
        self.js.reading += 1
        self.js.most_reading = max(self.js.most_reading, self.js.reading)
        for _ in range(3):
            await asyncio.sleep(0)
        self.js.reading -= 1
        page, self.wanted = self.wanted[:batch], self.wanted[batch:]
        return [
            message(sequence, workflow_id, len(self.wanted) + len(page) - n - 1)
            for n, (sequence, workflow_id) in enumerate(page)
        ]

    async def unsubscribe(self) -> None:
        pass


def message(sequence: int, workflow_id: str, num_pending: int) -> SimpleNamespace:
    data = WorkflowCreated(workflow_id=workflow_id, workflow_type="approval").model_dump_json().encode()
    metadata = SimpleNamespace(sequence=SimpleNamespace(stream=sequence), num_pending=num_pending)
    return SimpleNamespace(data=data, metadata=metadata)


async def replayed(replay: LogReplay, js: StandInJetStream, after: int, workflow_id: str | None = None) -> list[int]:
    sequences = []
    async for page in replay.pages(js, after, len(js.log), workflow_id):  # pyright: ignore[reportArgumentType]
        sequences.extend(sequence for sequence, _ in page)
    return sequences


async def test_many_replays_at_once_read_at_most_the_allowed_pages_at_a_time():
    js = StandInJetStream(size=100)
    replay = LogReplay(Topology(), page_size=8, concurrency=3)

    results = await asyncio.gather(*(replayed(replay, js, after=0) for _ in range(50)))

    assert js.most_reading == 3
    assert all(result == list(range(1, 101)) for result in results)
    assert js.consumers == set()  # every replay's consumer deleted


async def test_a_replay_yields_the_events_after_the_sequence_of_one_workflow_when_asked():
    js = StandInJetStream(size=30)
    replay = LogReplay(Topology(), page_size=4, concurrency=1)

    assert await replayed(replay, js, after=20) == list(range(21, 31))
    assert await replayed(replay, js, after=10, workflow_id="w1") == [13, 16, 19, 22, 25, 28]
    assert await replayed(replay, js, after=30) == []
