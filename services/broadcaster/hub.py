"""Fan-out: one feed of events in, one bounded queue per client out. A client that cannot keep up is dropped;
it never slows the feed or the other clients."""

import asyncio

from services.broadcaster.metrics import CLIENTS, DROPPED, RELAYED

Relayed = tuple[int, str]  # an event's stream sequence, and the message that carries it


class Follower:
    """One client's share of the feed: the events it asked for, waiting to be sent."""

    def __init__(self, workflow_id: str | None, capacity: int) -> None:
        self.workflow_id = workflow_id
        self.queue: asyncio.Queue[Relayed] = asyncio.Queue(capacity)
        self.dropped = asyncio.Event()  # set when the queue overflowed: the hub no longer feeds this follower

    def wants(self, workflow_id: str) -> bool:
        return self.workflow_id is None or self.workflow_id == workflow_id


class Hub:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._followers: set[Follower] = set()
        self.last_sequence = 0  # of the last event handed out: every follower has it queued if it wanted it

    def __len__(self) -> int:
        return len(self._followers)

    def follow(self, workflow_id: str | None) -> Follower:
        """Start feeding a new follower: it receives every event published from now on."""
        follower = Follower(workflow_id, self._capacity)
        self._followers.add(follower)
        CLIENTS.inc()
        return follower

    def leave(self, follower: Follower) -> None:
        if follower in self._followers:
            self._followers.discard(follower)
            CLIENTS.dec()

    def publish(self, workflow_id: str, sequence: int, message: str) -> None:
        """Hand the event to every follower of the workflow, without waiting for any of them."""
        for follower in [follower for follower in self._followers if follower.wants(workflow_id)]:
            try:
                follower.queue.put_nowait((sequence, message))
            except asyncio.QueueFull:
                self.leave(follower)
                follower.dropped.set()
                DROPPED.inc()
        RELAYED.inc()
        self.last_sequence = max(self.last_sequence, sequence)
