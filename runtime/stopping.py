"""A clean exit on SIGTERM. Kept free of heavy imports so a service installs it before anything else: a stop that
comes while it is still starting (importing, connecting) is then a clean stop too, not a kill."""

import os
import signal
import sys
from types import FrameType


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """Exit 0 at once: nothing of the service runs yet (or, when uvicorn raises the signal again after its graceful
    shutdown, all of it has stopped). Not by raising SystemExit: whatever code the signal interrupts may catch it (a
    library's `except BaseException`), and the service then runs on. CI saw an indexer stopped while it started run on
    until it was killed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def exit_cleanly_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, _exit_cleanly)
