"""A worker's CPU niceness: raised to the setting, never lowered (run in child processes: a
process cannot lower its own niceness back without privileges)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import RouterSettings

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import os, sys; from streams.worker import yield_cpu; "
    "print(yield_cpu(int(sys.argv[1])), os.getpriority(os.PRIO_PROCESS, 0))"
)


def _niceness_in_child(setting: int, started_at: int = 0) -> tuple[int, int]:
    """(what `yield_cpu(setting)` returned, the child's niceness after it)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(setting)],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
        preexec_fn=(lambda: os.nice(started_at)) if started_at else None,
    )  # fmt: skip
    returned, after = done.stdout.split()
    return int(returned), int(after)


def test_the_niceness_is_raised_to_the_setting() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert _niceness_in_child(base + 7) == (base + 7, base + 7)


def test_a_higher_niceness_set_by_the_operator_stays() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert _niceness_in_child(base + 3, started_at=9) == (base + 9, base + 9)


def test_a_niceness_out_of_range_names_the_setting() -> None:
    with pytest.raises(ValidationError, match="cpu_niceness"):
        RouterSettings(KAFKA_BOOTSTRAP_SERVERS="unused:9092", cpu_niceness=20)
    assert RouterSettings(KAFKA_BOOTSTRAP_SERVERS="unused:9092").cpu_niceness == 0
