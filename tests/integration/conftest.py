from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from schemas.topics import CHANNEL_DLQ, QUEUE_PREFIX, TICKETS_DECISIONS, TICKETS_EVENTS
from streams.local.dovecot import INSTALL_HINT, LocalDovecot, dovecot_binary
from tests.containers import podman_env
from tests.harness import (
    REPO,
    Collector,
    WorkerHung,
    WorkerProcess,
    produce,
    topics_exist,
    wait_for,
)

OUTPUT_TOPICS = (
    f"{QUEUE_PREFIX}*", CHANNEL_DLQ.name, TICKETS_EVENTS.name, TICKETS_DECISIONS.name
)


@dataclass
class EngineUnderTest:
    bootstrap: str
    prefix: str
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    worker_env: dict[str, str] = field(default_factory=dict)  # every worker's, under `env`

    def start_worker(self, *args: str, **env: str) -> WorkerProcess:
        n = len(self.workers)
        worker = WorkerProcess(
            self.bootstrap, self.prefix, self.tmp / f"data-{n}", self.tmp / f"worker-{n}.log",
            extra_env={**self.worker_env, **env}, args=args,
        ).start()
        self.workers.append(worker)
        wait_for(
            lambda: worker.proc is not None and worker.proc.poll() is None
            and topics_exist(self.bootstrap, [f"{self.prefix}channel.email"]),
            60, "the worker to create its topics",
        )
        return worker

    def send(self, channel: str, records: list[tuple[bytes | None, bytes]]) -> None:
        produce(self.bootstrap, f"{self.prefix}channel.{channel}", records)

    def collector(self, *topics: str) -> Collector:
        return Collector(self.bootstrap, self.prefix, topics or OUTPUT_TOPICS)

    def stop_all(self) -> None:
        """SIGTERM every worker still running; each must exit 0 within the deadline."""
        failures: list[str] = []
        for n, worker in enumerate(self.workers):
            if worker.proc is None or worker.proc.poll() is not None:
                worker.stop()  # exited or killed by the test: only closes its log
                continue
            try:
                rc = worker.stop()
            except WorkerHung as exc:
                failures.append(f"worker-{n}: {exc}")
                continue
            if rc != 0:
                failures.append(f"worker-{n} exited {rc} after SIGTERM:\n{worker.log_text()}")
        if failures:
            raise AssertionError("\n\n".join(failures))

    def logs(self) -> str:
        return "\n".join(w.log_text() for w in self.workers)


@pytest.fixture
def engine(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[EngineUnderTest]:
    under_test = EngineUnderTest(kafka_bootstrap, topic_prefix, tmp_path)
    try:
        yield under_test
    finally:
        try:
            under_test.stop_all()
        finally:
            print(under_test.logs())  # shown by pytest only when the test failed


IMAP_USER, IMAP_PASSWORD = "support", "imap-secret-42"


@pytest.fixture
def dovecot() -> Iterator[LocalDovecot]:
    """A Dovecot IMAP server of its own (`streams.local.dovecot`), for the email tests."""
    if dovecot_binary() is None:
        pytest.skip(f"dovecot is not installed: {INSTALL_HINT}")
    with LocalDovecot(user=IMAP_USER, password=IMAP_PASSWORD) as server:
        yield server
        print(server.log_text())  # shown by pytest only when the test failed


@pytest.fixture(scope="session")
def image() -> str:
    """The engine's image, built once per session by `make image` (deploy/Containerfile)."""
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("podman and runc (Debian packages) are needed to build and run the image")
    done = subprocess.run(["make", "--no-print-directory", "image"], cwd=REPO, env=podman_env(),
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]
