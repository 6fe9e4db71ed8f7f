"""The one source of randomness. Seeded, every draw is a pure function of (seed, key): the same job gets the same
output in any process, in any order, after any restart. Unseeded, draws come from the OS."""

import random


class Randomness:
    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._system = random.SystemRandom()

    def draw(self, *key: object) -> float:
        """A float in [0, 1) for this key."""
        if self.seed is None:
            return self._system.random()
        return random.Random("/".join(map(str, (self.seed, *key)))).random()
