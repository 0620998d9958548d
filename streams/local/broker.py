"""A throwaway Apache Kafka (KRaft) node for tests, the CLI, `make kafka`, `make demo`.

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
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
    "NodeSpec",
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
    PAUSED = "paused"  # SIGSTOPped: holds its ports and connections, answers nothing
    DOWN = "down"  # a cluster node killed or shut down, its data kept for a restart
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class NodeSpec:
    """One node of a multi-node KRaft cluster: fixed ports (clients and the quorum find it
    again after a restart), its id among the static `voters`, and the cluster's id."""

    node_id: int
    client_port: int
    controller_port: int
    voters: Mapping[int, str]
    cluster_id: str
    replication: int


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
    bootstrap: str, timeout: float, client: Mapping[str, Any] | None = None, brokers: int = 1
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
        return len(info.get("brokers") or ()) >= brokers
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _port_open(address: str, timeout: float) -> bool:
    host, _, port = address.strip().rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def broker_answers(
    bootstrap: str,
    timeout: float = 5.0,
    client: Mapping[str, Any] | None = None,
    brokers: int = 1,
) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request naming >= ``brokers``
    brokers (``client``: extra aiokafka settings, e.g. SASL credentials)."""
    if not any(_port_open(a, min(timeout, 1.0)) for a in bootstrap.split(",")):
        return False  # cheap pre-check: spares aiokafka's connection-error logging
    return _run_sync(lambda: _describe_cluster(bootstrap, timeout, client, brokers))


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
    failed or interrupted ``start()`` still kills it. With a ``node`` spec it is one node of
    a cluster (``streams.local.cluster``): fixed ports, and ``kill``/``shutdown`` keep its
    data for ``restart``.
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
        node: NodeSpec | None = None,
    ) -> None:
        self.version = version
        self.node = node
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
        self._address = ""
        self._libs = self._checkpoint = Path()
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
        self.spawn()
        return self.wait_ready()

    def spawn(self) -> None:
        """Format storage and launch the JVM without waiting for it (a cluster starts every
        node first: none answers before the quorum has a majority)."""
        with self._lock:
            if self.state is not State.NEW:
                raise KafkaLauncherError(f"start() on a {self.state.name} broker")
            self.state = State.STARTING
            self.owner_pid = os.getpid()
        try:
            check_prerequisites(need_mvn=False)
            checkpoint = bootstrap_checkpoint(self.version, self.cache_dir)
            self._libs, self._checkpoint = checkpoint.parent / "libs", checkpoint
            self.workdir = new_workdir()
            self._spawn()
        except BaseException:
            self._fail()
            raise

    def wait_ready(self) -> str:
        """Until the spawned node answers (a single node: relaunched on fresh ports when
        another process took one first); RUNNING, and the bootstrap."""
        try:
            for attempt in range(3):
                try:
                    self._wait_answering()
                    break
                except KafkaLauncherError as e:
                    retry = self.node is None and "Address already in use" in str(e)
                    if attempt == 2 or not retry:
                        raise
                    self._spawn()
        except BaseException:
            self._fail()
            raise
        self.state = State.RUNNING
        if not self.detached:
            _LIVE.add(self)
        assert self._bootstrap is not None
        return self._bootstrap

    def _fail(self) -> None:
        self.state = State.FAILED
        self._kill(0.0)
        self._remove_workdir()

    def _spawn(self) -> None:
        assert self.workdir is not None
        self._kill(0.0)  # a previous attempt's JVM
        data, logs = self.workdir / "data", self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        node = self.node
        if node is None:  # fresh ports and storage on every attempt
            shutil.rmtree(data, ignore_errors=True)
            client = Listener("PLAINTEXT", free_port())
            ctrl = Listener("CONTROLLER", free_port(), controller=True)
            node_id, cluster_id, replication = 1, new_kafka_uuid(), 1
            voters: Mapping[int, str] = {1: ctrl.address}
        else:
            client = Listener("PLAINTEXT", node.client_port)
            ctrl = Listener("CONTROLLER", node.controller_port, controller=True)
            node_id, voters = node.node_id, node.voters
            cluster_id, replication = node.cluster_id, node.replication
        cfg = broker_config(
            node_id, [client, ctrl], log_dir=data, voters=voters, replication=replication,
            overrides=self.overrides,
        )  # fmt: skip
        props = self.workdir / "server.properties"
        props.write_text(render_properties(cfg))
        if not (data / "meta.properties").is_file():  # a restarted node keeps its log
            write_storage(data, self._checkpoint, node_id=node_id, cluster_id=cluster_id)
        java = java_command(self._libs, logs)
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits: main thread only.
        on_main = threading.current_thread() is threading.main_thread()
        preexec = die_with_parent(os.getpid()) if on_main and not self.detached else None
        with open(logs / "console.log", "ab") as console:
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
        self._address = client.address
        if self.on_spawn is not None:
            info = {"pid": self._pid, "bootstrap": client.address, "workdir": str(self.workdir)}
            self.on_spawn({**info, "log": str(self.log_file)})

    def _wait_answering(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise KafkaLauncherError(
                    f"Kafka exited with code {self._proc.returncode} during startup\n"
                    + self.log_tail()
                )
            if broker_answers(self._address, timeout=2.0, client=self.client_config):
                self._bootstrap = self._address
                return
            time.sleep(0.1)
        raise KafkaLauncherError(
            f"Kafka did not answer on {self._address} within {self.start_timeout:.0f}s\n"
            + self.log_tail()
        )

    # ---------------------------------------------------------- faults (cluster nodes)

    def kill(self) -> None:
        """SIGKILL: no controlled shutdown; the data stays for `restart`."""
        self._require(State.RUNNING, State.PAUSED)
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait()
        self._proc = None
        self.state = State.DOWN

    def shutdown(self) -> None:
        """SIGTERM (controlled shutdown: leadership moves first); the data stays."""
        self._require(State.RUNNING)
        self._kill(self.stop_timeout)
        self.state = State.DOWN

    def pause(self) -> None:
        """SIGSTOP the JVM: its sockets stay open and nothing answers (a hung broker)."""
        self._require(State.RUNNING)
        assert self._pid is not None
        os.kill(self._pid, signal.SIGSTOP)
        self.state = State.PAUSED

    def resume(self) -> None:
        self._require(State.PAUSED)
        assert self._pid is not None
        os.kill(self._pid, signal.SIGCONT)
        self.state = State.RUNNING

    def restart(self) -> str:
        """Launch a killed or shut-down node again on its ports and data; wait until it
        answers."""
        self.respawn()
        return self.wait_ready()

    def respawn(self) -> None:
        """`restart` without the wait (a whole cluster relaunches every node first)."""
        self._require(State.DOWN)
        self.state = State.STARTING
        self._spawn()

    def _require(self, *states: State) -> None:
        if self.node is None:
            raise KafkaLauncherError("faults apply to cluster nodes (streams.local.cluster)")
        if self.state not in states:
            raise KafkaLauncherError(f"node {self.node.node_id} is {self.state.name}")

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
            paused = self.state is State.PAUSED
            self.state = State.STOPPING
        try:
            if paused and self._pid is not None:  # a stopped JVM cannot act on SIGTERM
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGCONT)
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
