"""`python -m bench.engine`: the pure engine's CPU per full approval cycle (create, process, the job's result,
approve), each command decided on the state refolded from the whole log so far, as the unit tests' history does; no
broker, no I/O. Best of 12 rounds of 300 cycles: a figure to compare two versions of the engine in one sitting."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "unit"))

from workflow_history import approve, complete, create, given, process  # (tests/unit, on the path above)

ROUNDS, CYCLES = 12, 300


def cycle_ms() -> float:
    def cycle() -> None:
        history = given(create(), process(), complete(0.9), approve(), send_fails=lambda *_: False)
        assert history.state.business_state == "Finished"

    for _ in range(50):  # warm up
        cycle()
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CYCLES):
            cycle()
        best = min(best, (time.perf_counter() - started) / CYCLES * 1000)
    return best


if __name__ == "__main__":
    print(f"engine: {cycle_ms():.3f} ms of CPU per full approval cycle (decided and refolded, best of {ROUNDS})")
