"""Worker log lines: JSON only, and `error` only for what an operator must act on."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import orjson
import pytest
from aiokafka import errors

from streams.logs import RepeatedLines, TransientKafkaErrors
from tests.harness import REPO


def level_after_filter(name: str, msg: str, *args: object) -> str:
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)
    assert TransientKafkaErrors().filter(record)  # never drops a line
    return record.levelname


@pytest.mark.parametrize(
    ("name", "msg", "args", "level"),
    [
        ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s",
         (errors.GroupCoordinatorNotAvailableError(),), "WARNING"),
        ("aiokafka.consumer.fetcher", "Failed fetch offsets from %s: %s",
         (1, errors.NotLeaderForPartitionError()), "WARNING"),
        ("aiokafka.cluster", "Error fetching metadata for topic %s: %s",
         ("t", errors.LeaderNotAvailableError), "WARNING"),  # the class, not an instance
        ("aiokafka.cluster", "Topic %s not found in cluster metadata", ("t",), "WARNING"),
        # not retried: still errors
        ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s",
         (errors.GroupAuthorizationFailedError(),), "ERROR"),
        ("aiokafka.consumer.group_coordinator",
         "Heartbeat session expired - marking coordinator dead", (), "ERROR"),
        # only aiokafka's own lines are reinterpreted
        ("router.worker", "failed: %s", (errors.GroupCoordinatorNotAvailableError(),), "ERROR"),
    ],
)  # fmt: skip
def test_retried_kafka_conditions_are_warnings(
    name: str, msg: str, args: tuple[object, ...], level: str
) -> None:
    assert level_after_filter(name, msg, *args) == level


SCRIPT = textwrap.dedent("""
    import logging, warnings
    from aiokafka.errors import GroupCoordinatorNotAvailableError
    from streams.logs import configure_logging

    configure_logging("INFO")
    logging.getLogger("aiokafka.consumer.group_coordinator").error(
        "Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
    logging.getLogger("faust.worker").error("a real error")
    warnings.warn("something deprecated", UserWarning, stacklevel=1)
""")


def test_every_line_is_json_with_the_level_it_deserves() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=30, check=True)  # fmt: skip
    assert done.stdout == ""
    lines = [orjson.loads(line) for line in done.stderr.splitlines()]
    levels = {line["event"].split(":")[0]: line["level"] for line in lines}
    assert levels["Group Coordinator Request failed"] == "warning"
    assert levels["a real error"] == "error"
    assert any("something deprecated" in line["event"] for line in lines)


def test_a_library_line_repeating_is_written_once_per_window_with_a_count() -> None:
    now = [100.0]
    lines = RepeatedLines(window_s=10.0, clock=lambda: now[0])

    def record(name: str, node: int) -> logging.LogRecord:
        template = "Unable connect to node with id %s: %s"
        args = (node, "refused")
        return logging.LogRecord(name, logging.ERROR, __file__, 1, template, args, None)

    kept = [lines.filter(record("aiokafka.conn", n)) for n in range(500)]
    assert kept == [True] + [False] * 499  # the template repeats, whatever the node
    assert lines.filter(record("aiokafka.other", 1))  # another logger is another line
    assert lines.filter(record("router.stage", 1))
    assert lines.filter(record("router.stage", 2))  # the engine's own lines are all kept
    now[0] += 10.0
    later = record("aiokafka.conn", 3)
    assert lines.filter(later)
    assert later.getMessage() == (
        "Unable connect to node with id 3: refused (499 more like this left out in 10 s)"
    )
    assert not lines.filter(record("aiokafka.conn", 4))
