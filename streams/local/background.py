"""Background mode of the local Kafka, for ``make kafka``.

``python -m streams.local.broker start`` starts a detached broker (it outlives this
process), records it in a state file and prints exactly one line,
``KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT``; when the recorded broker still answers it
only prints that line again. ``--brokers 3`` starts a cluster instead
(``streams.local.cluster``; the line lists every node). ``stop`` stops it and removes its work
dirs and the state file; ``status`` prints the state as JSON (exit 0 only when it answers).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from streams.local.broker import (
    DEFAULT_VERSION,
    KafkaLauncherError,
    LocalKafka,
    broker_answers,
    default_cache_dir,
    pid_alive,
    terminate_pid,
)
from streams.local.cluster import LocalKafkaCluster


def default_state_file() -> Path:
    return default_cache_dir() / "kafka-state.json"


def read_state(state_file: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "pid" in state else None


def recorded_nodes(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Each recorded JVM ({pid, workdir, ...}): one for a broker, one per cluster node."""
    nodes = state.get("nodes")
    return list(nodes) if isinstance(nodes, list) else [state]


def is_our_broker(state: Mapping[str, Any]) -> bool:
    """Every recorded pid runs, and (where /proc exists) is the JVM of its work dir."""
    return all(_is_our_jvm(node) for node in recorded_nodes(state))


def _is_our_jvm(state: Mapping[str, Any]) -> bool:
    pid = int(state["pid"])
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True
    return str(state.get("workdir", "")) in cmdline and "kafka.Kafka" in cmdline


@contextlib.contextmanager
def _locked(state_file: Path) -> Iterator[None]:
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with open(state_file.with_name(state_file.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `make kafka` at once start one broker
        yield


def _discard(state_file: Path, state: Mapping[str, Any] | None, timeout: float) -> bool:
    """Stop the recorded broker if it is still ours; remove its work dir and state."""
    stopped = False
    for node in recorded_nodes(state) if state is not None else []:
        if _is_our_jvm(node):
            terminate_pid(int(node["pid"]), timeout)
            stopped = True
        if node.get("workdir"):
            shutil.rmtree(node["workdir"], ignore_errors=True)
    state_file.unlink(missing_ok=True)
    return stopped


def start_background(
    state_file: Path,
    *,
    version: str = DEFAULT_VERSION,
    heap: Sequence[str] | None = None,
    timeout: float = 90.0,
    brokers: int = 1,
) -> str:
    """Return the bootstrap of the recorded live broker (or cluster), or start a detached
    one with `brokers` nodes."""
    with _locked(state_file):
        state = read_state(state_file)
        if state and is_our_broker(state) and broker_answers(str(state["bootstrap"])):
            running = len(recorded_nodes(state))
            if running != brokers:
                raise KafkaLauncherError(
                    f"a background Kafka of {running} broker(s) runs at {state['bootstrap']}; "
                    "stop it first (make kafka-stop)"
                )
            return str(state["bootstrap"])
        _discard(state_file, state, timeout=5.0)

        def record(info: Mapping[str, Any], status: str) -> None:
            tmp = state_file.with_name(state_file.name + ".tmp")
            data = {**info, "version": version, "status": status, "started_at": time.time()}
            tmp.write_text(json.dumps(data, indent=2) + "\n")
            os.replace(tmp, state_file)

        # Recorded as soon as a JVM exists, so `stop` finds it even if we die while it
        # starts; a failed or interrupted start() kills it and we drop the record.
        spawned: list[dict[str, Any]] = []

        def on_spawn(info: dict[str, Any]) -> None:
            spawned[:] = [n for n in spawned if n["workdir"] != info["workdir"]] + [info]
            nodes = {"nodes": spawned} if brokers > 1 else {}
            record({**spawned[0], **nodes}, "starting")

        kafka: LocalKafka | LocalKafkaCluster
        if brokers > 1:
            kafka = LocalKafkaCluster(
                brokers, version=version, heap=heap, start_timeout=timeout, detached=True,
                on_spawn=on_spawn,
            )  # fmt: skip
        else:
            kafka = LocalKafka(
                version=version, heap=heap, start_timeout=timeout, detached=True,
                on_spawn=on_spawn,
            )  # fmt: skip
        try:
            bootstrap = kafka.start()
        except BaseException:
            state_file.unlink(missing_ok=True)
            raise
        nodes = {"nodes": spawned} if brokers > 1 else {}
        record({**spawned[0], **nodes, "bootstrap": bootstrap}, "running")
        kafka.detach()
        return bootstrap


def stop_background(state_file: Path, *, timeout: float = 20.0) -> bool:
    """Stop the recorded broker; True when a running broker was stopped."""
    with _locked(state_file):
        return _discard(state_file, read_state(state_file), timeout)


def status(state_file: Path) -> dict[str, Any]:
    state = read_state(state_file) or {}
    alive = bool(state) and is_our_broker(state)
    answering = alive and broker_answers(str(state["bootstrap"]))
    return {**state, "state_file": str(state_file), "alive": alive, "answering": answering}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.local.broker", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="default: $ROUTER_CACHE_DIR/kafka-state.json or .cache/...",
    )
    parser.add_argument("--kafka-version", default=DEFAULT_VERSION)
    parser.add_argument(
        "--heap", default=None, help='JVM heap flags, e.g. --heap="-Xmx1g -Xms512m"'
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="start/stop deadline, s")
    parser.add_argument(
        "--brokers", type=int, default=1, help="1: one broker; 3 or more: a KRaft cluster"
    )
    args = parser.parse_args(argv)
    state_file: Path = args.state_file or default_state_file()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # unwind (and clean up) like Ctrl-C
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        if args.command == "start":
            heap = args.heap.split() if args.heap else None
            if args.brokers == 2 or args.brokers < 1:
                parser.error("--brokers: 1, or 3 and more (a quorum that survives one loss)")
            bootstrap = start_background(
                state_file, version=args.kafka_version, heap=heap, timeout=args.timeout,
                brokers=args.brokers,
            )  # fmt: skip
            print(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}", flush=True)
            return 0
        if args.command == "stop":
            stopped = stop_background(state_file, timeout=args.timeout)
            print("stopped" if stopped else "not running", file=sys.stderr)
            return 0
        info = status(state_file)
        print(json.dumps(info, indent=2))
        return 0 if info["answering"] else 1
    except KafkaLauncherError as e:
        print(f"local kafka: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
