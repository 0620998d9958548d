"""The shutdown watchdog: a stop that overruns its deadline ends the process, saying where."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from streams.early_exit import STOP_SIGNALS
from streams.shutdown import EXIT_OVERDUE
from tests.harness import REPO

STUCK = textwrap.dedent("""
    import asyncio
    from streams.logs import configure_logging
    from streams.shutdown import ShutdownWatchdog

    async def flush_that_never_ends() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        ShutdownWatchdog(0.3).arm(asyncio.get_running_loop(), "SIGTERM")
        await flush_that_never_ends()

    configure_logging("INFO")
    asyncio.run(main())
""")


def test_an_overdue_stop_logs_its_pending_tasks_and_exits_70() -> None:
    done = subprocess.run([sys.executable, "-c", STUCK], cwd=REPO, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == EXIT_OVERDUE, done.stderr
    logged = done.stdout + done.stderr
    assert "shutdown_pending_tasks" in logged
    assert "flush_that_never_ends" in logged  # where the stuck task waits
    assert '"reason":"SIGTERM"' in logged
    assert "shutdown_overdue" in logged


IMPORTING = textwrap.dedent("""
    import os
    import signal
    from streams.early_exit import exit_on_stop_signals

    exit_on_stop_signals()
    os.kill(os.getpid(), signal.{name})
    import streams.worker  # the engine's imports, which a stop signal must not turn into a crash
    print("imports finished", flush=True)
""")


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=lambda s: s.name)
def test_a_stop_signal_while_the_worker_imports_exits_0(sig: signal.Signals) -> None:
    code = IMPORTING.format(name=sig.name)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "imports finished" not in done.stdout
    assert done.stderr == ""
