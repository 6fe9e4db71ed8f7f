"""The simulated outside world, as the handler of every step the processor takes: a random output in [0, 1), and at
configurable rates a transient error, a non-retryable one, or a run slower than the step's timeout. What to do about a
failure is the step's policy, applied by the orchestrator: the worker only reports it."""

import asyncio
import logging
from typing import Any

from wfworker import Job, NonRetryableError

from runtime.randomness import Randomness
from services.processor.settings import ProcessorSettings

log = logging.getLogger("processor")


class TransientError(Exception):
    """A failure worth trying again (the step's retry policy decides)."""


class FatalError(NonRetryableError):
    """A failure no try can mend."""


class Simulator:
    def __init__(self, settings: ProcessorSettings) -> None:
        self.settings, self.randomness = settings, Randomness(settings.seed)

    async def run(self, job: Job[dict[str, Any]]) -> dict[str, Any]:
        if self._happens("slow", job, self.settings.slow_rate):
            log.info("job %s: a slow run of %.1f s", job.id, self.settings.slow_s)
            await asyncio.sleep(self.settings.slow_s)
        if self._happens("transient", job, self.settings.transient_error_rate):
            raise TransientError("transient error")
        if self._happens("fatal", job, self.settings.fatal_error_rate):
            raise FatalError("non-retryable error")
        return {"output": self.randomness.draw("output", job.id)}

    def _happens(self, failure: str, job: Job, rate: float) -> bool:
        # Not drawn at a rate of 0 (the default): a seeded draw seeds a generator from a string, and skipping one
        # changes no other draw (each depends on its key only).
        return rate > 0 and self.randomness.draw(failure, job.id) < rate
