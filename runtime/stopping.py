"""A clean exit on SIGTERM. Kept free of heavy imports so a service installs it before anything else: a stop that
comes while it is still starting (importing, connecting) is then a clean stop too, not a kill."""

import signal
import sys
from types import FrameType


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def exit_cleanly_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, _exit_cleanly)
