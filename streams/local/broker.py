"""A throwaway single-node Apache Kafka (KRaft) for tests, the CLI, `make kafka`, `make demo`.

Official Apache Kafka jars, resolved by Maven (``deploy/kafka/pom.xml``) into a cache and
run as a plain JVM. A foreground ``LocalKafka`` dies with the Python process that started
it, even on ``kill -9`` (Linux ``PR_SET_PDEATHSIG``). ``kafka_for_tests`` picks the Kafka:
``KAFKA_BOOTSTRAP_SERVERS``, this local broker, or testcontainers. Background mode
(``make kafka``): ``streams.local.background``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from streams.local.install import (
    BROKER_JVM_FLAGS,
    DEFAULT_HEAP,
    DEFAULT_VERSION,
    DOCKER_CLIENT_PORT,
    INSTALL_HINT,
    MESSAGE_MAX_BYTES,
    KafkaLauncherError,
    Listener,
    bootstrap_checkpoint,
    broker_config,
    check_prerequisites,
    default_cache_dir,
    die_with_parent,
    docker_image,
    docker_kafka_env,
    free_port,
    jars_cached,
    java_command,
    java_major_version,
    new_kafka_uuid,
    new_workdir,
    pid_alive,
    render_properties,
    resolve_jars,
    terminate_pid,
    write_storage,
)

__all__ = [
    "DEFAULT_VERSION",
    "MESSAGE_MAX_BYTES",
    "KafkaLauncherError",
    "Listener",
    "LocalKafka",
    "State",
    "broker_answers",
    "broker_config",
    "default_cache_dir",
    "docker_available",
    "kafka_for_tests",
    "local_kafka_available",
    "pid_alive",
    "render_properties",
    "resolve_bootstrap",
    "resolve_jars",
    "terminate_pid",
]


class State(Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def _run_sync(make: Callable[[], Coroutine[Any, Any, bool]]) -> bool:
    """asyncio.run, or in a helper thread when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    out: list[bool] = [False]
    t = threading.Thread(target=lambda: out.__setitem__(0, asyncio.run(make())))
    t.start()
    t.join()
    return out[0]


async def _describe_cluster(
    bootstrap: str, timeout: float, client: Mapping[str, Any] | None = None
) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="local-kafka-probe",
        request_timeout_ms=int(timeout * 1000),
        **(client or {}),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        info = await asyncio.wait_for(admin.describe_cluster(), timeout)
        return bool(info.get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def broker_answers(
    bootstrap: str, timeout: float = 5.0, client: Mapping[str, Any] | None = None
) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request with >= 1 broker
    (``client``: extra aiokafka settings, e.g. SASL credentials)."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout, 1.0)).close()
    except (OSError, ValueError):
        return False  # cheap pre-check: spares aiokafka's connection-error logging
    return _run_sync(lambda: _describe_cluster(bootstrap, timeout, client))


# ------------------------------------------------------------------------- broker

_LIVE: set[LocalKafka] = set()


@atexit.register
def _stop_live_brokers() -> None:
    for kafka in list(_LIVE):
        if kafka.owner_pid != os.getpid():
            continue  # a fork()ed child exiting must not stop its parent's broker
        with contextlib.suppress(Exception):
            kafka.stop()


class LocalKafka:
    """One combined broker+controller KRaft node on free 127.0.0.1 ports.

    ``with LocalKafka() as kafka: kafka.bootstrap``. ``detached=True`` (``make kafka``)
    lets the broker outlive this process once ``detach()`` is called; until then a
    failed or interrupted ``start()`` still kills it.
    """

    def __init__(
        self,
        *,
        version: str = DEFAULT_VERSION,
        heap: Sequence[str] | None = None,
        jvm_opts: Sequence[str] = (),
        cache_dir: Path | str | None = None,
        overrides: Mapping[str, str] | None = None,
        client_config: Mapping[str, Any] | None = None,
        start_timeout: float = 90.0,
        stop_timeout: float = 20.0,
        detached: bool = False,
        on_spawn: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.version = version
        env_heap = os.environ.get("KAFKA_HEAP_OPTS", "").split()
        self.heap = tuple(heap if heap is not None else env_heap or DEFAULT_HEAP)
        self.jvm_opts = tuple(jvm_opts)
        self.cache_dir = cache_dir
        self.overrides = dict(overrides or {})
        self.client_config = dict(client_config or {})  # how the readiness probe connects
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.detached = detached
        self.on_spawn = on_spawn  # sees {pid, bootstrap, workdir, log} before readiness
        self.state = State.NEW
        self.owner_pid = os.getpid()
        self.workdir: Path | None = None
        self._bootstrap: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<LocalKafka {self.state.name} {self._bootstrap or ''} pid={self._pid}>"

    @property
    def bootstrap(self) -> str:
        if self.state is not State.RUNNING or self._bootstrap is None:
            raise KafkaLauncherError(f"broker is {self.state.name}, not RUNNING")
        return self._bootstrap

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def log_file(self) -> Path | None:
        return self.workdir / "logs" / "server.log" if self.workdir else None

    def log_tail(self, lines: int = 40) -> str:
        if self.workdir is None:
            return ""
        out = []
        for name in ("console.log", "server.log"):
            with contextlib.suppress(OSError):
                text = (self.workdir / "logs" / name).read_text(errors="replace")
                out.append(f"--- {name} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(out)

    def start(self) -> str:
        """Format storage, launch the JVM, wait until it answers; return the bootstrap."""
        with self._lock:
            if self.state is not State.NEW:
                raise KafkaLauncherError(f"start() on a {self.state.name} broker")
            self.state = State.STARTING
            self.owner_pid = os.getpid()
        try:
            check_prerequisites(need_mvn=False)
            checkpoint = bootstrap_checkpoint(self.version, self.cache_dir)
            libs = checkpoint.parent / "libs"
            self.workdir = new_workdir()
            for attempt in range(3):  # a free port can be taken before the JVM binds it
                try:
                    self._launch(libs, checkpoint)
                    break
                except KafkaLauncherError as e:
                    if attempt == 2 or "Address already in use" not in str(e):
                        raise
        except BaseException:
            self.state = State.FAILED
            self._kill(0.0)
            self._remove_workdir()
            raise
        self.state = State.RUNNING
        if not self.detached:
            _LIVE.add(self)
        assert self._bootstrap is not None
        return self._bootstrap

    def _launch(self, libs: Path, checkpoint: Path) -> None:
        assert self.workdir is not None
        self._kill(0.0)  # a previous attempt's JVM
        data, logs = self.workdir / "data", self.workdir / "logs"
        shutil.rmtree(data, ignore_errors=True)
        logs.mkdir(exist_ok=True)
        client = Listener("PLAINTEXT", free_port())
        ctrl = Listener("CONTROLLER", free_port(), controller=True)
        cfg = broker_config(
            1, [client, ctrl], log_dir=data, voters={1: ctrl.address}, overrides=self.overrides
        )
        props = self.workdir / "server.properties"
        props.write_text(render_properties(cfg))
        write_storage(data, checkpoint, node_id=1, cluster_id=new_kafka_uuid())
        java = java_command(libs, logs)
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits: main thread only.
        on_main = threading.current_thread() is threading.main_thread()
        preexec = die_with_parent(os.getpid()) if on_main and not self.detached else None
        with open(logs / "console.log", "wb") as console:
            self._proc = subprocess.Popen(
                [*java, *self.heap, *BROKER_JVM_FLAGS, *self.jvm_opts, "kafka.Kafka", str(props)],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
                cwd=self.workdir,
            )
        self._pid = self._proc.pid
        owners = [self._pid] if self.detached else [os.getpid(), self._pid]
        (self.workdir / "owner.json").write_text(json.dumps({"pids": owners}))
        bootstrap = client.address
        if self.on_spawn is not None:
            info = {"pid": self._pid, "bootstrap": bootstrap, "workdir": str(self.workdir)}
            self.on_spawn({**info, "log": str(self.log_file)})
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise KafkaLauncherError(
                    f"Kafka exited with code {self._proc.returncode} during startup\n"
                    + self.log_tail()
                )
            if broker_answers(bootstrap, timeout=2.0, client=self.client_config):
                self._bootstrap = bootstrap
                return
            time.sleep(0.1)
        raise KafkaLauncherError(
            f"Kafka did not answer on {bootstrap} within {self.start_timeout:.0f}s\n"
            + self.log_tail()
        )

    def _kill(self, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                terminate_pid(proc.pid, timeout)
            proc.wait()
        elif self._pid is not None and self.detached and pid_alive(self._pid):
            terminate_pid(self._pid, timeout)  # detach()ed earlier in this process

    def _remove_workdir(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop(self) -> None:
        """SIGTERM (controlled shutdown), SIGKILL after ``stop_timeout``; remove the work dir."""
        with self._lock:
            if self.state in (State.NEW, State.STOPPED, State.FAILED):
                self.state = State.STOPPED if self.state is State.NEW else self.state
                return
            self.state = State.STOPPING
        try:
            self._kill(self.stop_timeout)
            self._remove_workdir()
        finally:
            _LIVE.discard(self)
            self.state = State.STOPPED

    def detach(self) -> None:
        """Forget the child process so this Python can exit while the broker runs on."""
        if not self.detached:
            raise KafkaLauncherError("only a detached=True broker can be left running")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)  # "subprocess still running"
            self._proc = None


# ---------------------------------------------------------------- choosing a Kafka


def local_kafka_available(version: str = DEFAULT_VERSION) -> bool:
    major = java_major_version()
    if major is None or major < 17:
        return False
    return jars_cached(version, None) is not None or shutil.which("mvn") is not None


def docker_available() -> bool:
    """True when a Docker engine answers a ping (docker SDK imported lazily)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker  # type: ignore[import-untyped]  # optional: the docker SDK, no stubs

            client = docker.from_env(timeout=3)
        except Exception:
            return False
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()


def resolve_bootstrap(stack: contextlib.ExitStack, *, version: str = DEFAULT_VERSION) -> str:
    """Bootstrap servers to use; whatever is started is stopped when ``stack`` closes.

    Preference: ``KAFKA_BOOTSTRAP_SERVERS``; a local jar broker (java 17+ and Maven);
    testcontainers' ``KafkaContainer`` when a Docker engine answers.
    """
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        return env
    if local_kafka_available(version):
        return stack.enter_context(LocalKafka(version=version)).bootstrap
    if docker_available():
        return _start_container(stack, version)
    raise KafkaLauncherError(
        "no Kafka available; choose one of: (1) set KAFKA_BOOTSTRAP_SERVERS=host:port of a "
        f"running broker; (2) {INSTALL_HINT} for a local broker from the Apache Kafka jars; "
        "(3) start a Docker engine so testcontainers can run Kafka"
    )


# testcontainers' KafkaContainer scripts Confluent images (cp-kafka paths, a "7.0.0" minimum
# tag for KRaft); the official apache/kafka image runs as a plain container configured by env.
CONTAINER_MODULE = "testcontainers.core.container"
CONTAINER_START_TIMEOUT_S = 90.0


def _start_container(stack: contextlib.ExitStack, version: str) -> str:
    """A throwaway ``apache/kafka:<version>`` container (``ROUTER_KAFKA_IMAGE`` overrides),
    stopped when ``stack`` closes. Not exercised on machines without a Docker engine."""
    import importlib

    container_cls = importlib.import_module(CONTAINER_MODULE).DockerContainer
    port = free_port()
    container = container_cls(os.environ.get("ROUTER_KAFKA_IMAGE", docker_image(version)))
    for key, value in docker_kafka_env(port, cluster_id=new_kafka_uuid()).items():
        container = container.with_env(key, value)
    container = container.with_bind_ports(DOCKER_CLIENT_PORT, port)
    stack.enter_context(container)
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + CONTAINER_START_TIMEOUT_S
    while not broker_answers(bootstrap, timeout=2.0):
        if time.monotonic() > deadline:
            raise KafkaLauncherError(
                f"Kafka container {container.image} did not answer on {bootstrap} "
                f"within {CONTAINER_START_TIMEOUT_S:.0f}s"
            )
        time.sleep(0.5)  # poll interval of a deadline-bounded wait
    return bootstrap


@contextlib.contextmanager
def kafka_for_tests(*, version: str = DEFAULT_VERSION) -> Iterator[str]:
    """Yield a bootstrap string; stop whatever was started on exit."""
    with contextlib.ExitStack() as stack:
        yield resolve_bootstrap(stack, version=version)


if __name__ == "__main__":
    from streams.local.background import main

    sys.exit(main())
