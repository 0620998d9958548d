"""The signals that stop a worker, and what they do before anything has started.

A worker spends its first second importing (faust, aiokafka, the rules compiler). A SIGTERM
then would kill it with the default action (exit -15), though nothing was started and nothing
can be lost; an orchestrator or a harness counting exit codes would report a crash. Until the
start-up steps install their own handlers (`streams.shutdown`), a stop signal exits 0.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_on_stop_signals() -> None:
    """Until replaced: a stop signal raises SystemExit(0) wherever the main thread is."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _exit_cleanly)
