"""A worker's stop is bounded.

SIGTERM (or SIGINT) runs faust's graceful stop: the partitions are paused, the records already
fetched are processed, the producer is flushed and the offsets committed, then the process
exits 0. A stop still running after `shutdown_timeout_s` means an await that never completes
(a flush waiting for a batch that cannot be sent, say): rather than hang until an orchestrator
kills it without a word, the worker logs `shutdown_overdue` with where every pending asyncio
task waits, and exits `EXIT_OVERDUE`. Nothing is lost that way either: what it had not committed
is read again by the next owner of its partitions (at-least-once).

While the worker imports, a signal exits 0 (`streams.early_exit`). Before faust's worker
takes over (topic creation, rules and vendor catch-up) a signal stops the start-up step and
the process exits 0 without starting the app; a signal between that and faust installing its
own handlers is handed on to faust.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any

import faust
import structlog

from streams.early_exit import STOP_SIGNALS

log = structlog.get_logger("router.shutdown")

EXIT_OVERDUE = 70  # EX_SOFTWARE
_FRAMES_PER_TASK = 5


class EarlySignals:
    """SIGTERM/SIGINT during start-up, before faust's worker handles them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.received: signal.Signals | None = None
        self._step: asyncio.Task[Any] | None = None
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.received = self.received or sig
        if self._step is not None:
            self._step.cancel()

    def run(self, step: Coroutine[Any, Any, Any]) -> bool:
        """Run one start-up step; False when a signal stopped it (or came before it)."""
        if self.received is not None:
            step.close()
            return False
        self._step = self.loop.create_task(step)
        try:
            self.loop.run_until_complete(self._step)
        except asyncio.CancelledError:
            if self.received is None:
                raise
            log.info("worker_stopped_during_startup", signal=self.received.name)
            return False
        finally:
            self._step = None
        return True


class ShutdownWatchdog:
    """Once armed, exits the process if it is still alive `deadline_s` later."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self._timer: threading.Timer | None = None

    def arm(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        if self._timer is not None:
            return
        # a thread: it must fire even when the event loop itself is stuck
        self._timer = threading.Timer(self.deadline_s, self._expire, args=(loop, reason))
        self._timer.daemon = True
        self._timer.start()

    def _expire(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        described = threading.Event()
        with contextlib.suppress(RuntimeError):  # loop closed: the process is exiting anyway
            loop.call_soon_threadsafe(_log_pending_tasks, loop, described)
        if not described.wait(2.0):  # the loop does not answer: show every thread instead
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        log.error("shutdown_overdue", reason=reason, deadline_s=self.deadline_s,
                  exit_code=EXIT_OVERDUE)
        sys.stderr.flush()
        os._exit(EXIT_OVERDUE)


def _log_pending_tasks(loop: asyncio.AbstractEventLoop, described: threading.Event) -> None:
    tasks = []
    for task in asyncio.all_tasks(loop):
        coro = task.get_coro()
        frames = _await_chain(coro)[-_FRAMES_PER_TASK:]
        where = " < ".join(
            f"{_short(f.f_code.co_filename)}:{f.f_lineno} {f.f_code.co_name}"
            for f in reversed(frames)
        )
        tasks.append(f"{getattr(coro, '__qualname__', task.get_name())}: {where}")
    log.error("shutdown_pending_tasks", tasks=sorted(tasks))
    described.set()


def _await_chain(coro: Any) -> list[Any]:
    """The frames of a suspended task, outermost first (Task.get_stack gives the first only)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def _short(path: str) -> str:
    """site-packages/faust/x.py -> faust/x.py; lib/python3.11/asyncio/x.py -> asyncio/x.py"""
    _, installed, rest = path.partition("site-packages/")
    if installed:
        return rest
    _, stdlib, rest = path.partition("/lib/python3.")
    return rest.partition("/")[2] if stdlib else path


class BoundedWorker(faust.Worker):
    """faust's worker with a deadline on its stop, whatever started the stop."""

    def __init__(
        self, *args: Any, shutdown_timeout_s: float, early: EarlySignals | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # faust's terminal spinner writes cursor escapes to stdout even when it is not a tty;
        # without it faust logs "Ready" instead, as JSON like every other line.
        self.spinner = None
        self.watchdog = ShutdownWatchdog(shutdown_timeout_s)
        self.early = early

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()  # replaces EarlySignals' handlers
        received = self.early.received if self.early is not None else None
        if received is not None:
            log.info("stop_requested_during_startup", signal=received.name)
            (self._on_sigint if received == signal.SIGINT else self._on_sigterm)()

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        self.watchdog.arm(self.loop, sig.name)
        super()._schedule_shutdown(sig)

    def on_worker_shutdown(self) -> None:  # the app stopped by itself (a crash, say)
        self.watchdog.arm(self.loop, "worker_shutdown")
        super().on_worker_shutdown()
