"""Install-side helpers of the local Kafka: jar resolution, broker config, processes.

Pure stdlib. ``streams.local.broker`` re-exports the public names; import them from there.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy" / "kafka"
DEFAULT_VERSION = "4.1.1"
DEFAULT_HEAP = ("-Xmx512m", "-Xms256m")
BROKER_JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError")
MESSAGE_MAX_BYTES = 8 * 1024 * 1024
# The Docker fallback runs the official image of the same release as the jars.
DOCKER_IMAGE_REPO = "apache/kafka"
DOCKER_CLIENT_PORT = 9092
DOCKER_CONTROLLER_PORT = 9093
INSTALL_HINT = (
    "install a Java 17+ runtime and Maven (Debian/Ubuntu: apt-get install "
    "openjdk-17-jre-headless maven; macOS: brew install openjdk@17 maven)"
)


CHECKPOINT = "bootstrap.checkpoint"


class KafkaLauncherError(RuntimeError):
    """The local broker could not be resolved, started or stopped."""


# --------------------------------------------------------------------------- jars


def default_cache_dir() -> Path:
    env = os.environ.get("ROUTER_CACHE_DIR")
    return Path(env) if env else REPO_ROOT / ".cache"


@functools.cache
def java_major_version() -> int | None:
    """Major version of ``java`` on PATH (17, 21, ...), or None when there is none."""
    if shutil.which("java") is None:
        return None
    try:
        out = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" -> 8


def check_prerequisites(*, need_mvn: bool = True) -> None:
    missing = []
    major = java_major_version()
    if major is None:
        missing.append("java (none on PATH)")
    elif major < 17:
        missing.append(f"java >= 17 (found {major})")
    if need_mvn and shutil.which("mvn") is None:
        missing.append("mvn (Maven)")
    if missing:
        raise KafkaLauncherError(
            f"local Kafka needs {', '.join(missing)}: {INSTALL_HINT}; "
            "or set KAFKA_BOOTSTRAP_SERVERS to an existing broker"
        )


def _pom_digest(version: str) -> str:
    return hashlib.sha256((DEPLOY_DIR / "pom.xml").read_bytes() + version.encode()).hexdigest()


def jars_cached(version: str, cache_dir: Path | str | None) -> Path | None:
    home = Path(cache_dir or default_cache_dir()) / f"kafka-{version}"
    marker = home / ".resolved"
    with contextlib.suppress(OSError):
        if marker.read_text().strip() == _pom_digest(version):
            return home / "libs"
    return None


def resolve_jars(version: str = DEFAULT_VERSION, cache_dir: Path | str | None = None) -> Path:
    """Resolve the Kafka jars with Maven once into ``<cache>/kafka-<version>/libs``."""
    libs = jars_cached(version, cache_dir)
    if libs is not None:
        return libs
    check_prerequisites(need_mvn=True)
    home = Path(cache_dir or default_cache_dir()) / f"kafka-{version}"
    home.mkdir(parents=True, exist_ok=True)
    libs = home / "libs"
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be resolving right now
        if jars_cached(version, cache_dir) is not None:
            return libs
        shutil.rmtree(libs, ignore_errors=True)
        (home / CHECKPOINT).unlink(missing_ok=True)
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(DEPLOY_DIR / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            f"-Dkafka.version={version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
        if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise KafkaLauncherError(
                f"mvn could not resolve Kafka {version} (exit {proc.returncode}): {' '.join(cmd)}"
                f"\n{tail}"
            )
        (home / ".resolved").write_text(_pom_digest(version) + "\n")
    return libs


# ------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Listener:
    """One Kafka listener: ``name://host:port`` speaking ``protocol``."""

    name: str
    port: int
    protocol: str = "PLAINTEXT"  # PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL
    host: str = "127.0.0.1"
    controller: bool = False  # a KRaft controller listener (never advertised to clients)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def broker_config(
    node_id: int,
    listeners: Sequence[Listener],
    *,
    log_dir: str | Path,
    voters: Mapping[int, str],
    roles: Sequence[str] = ("broker", "controller"),
    replication: int = 1,
    inter_broker_listener: str | None = None,
    controller_listener: str = "CONTROLLER",
    message_max_bytes: int = MESSAGE_MAX_BYTES,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Render one KRaft node's ``server.properties`` as a dict (pure, no I/O).

    ``voters`` maps each controller's node id to its controller ``host:port`` (a static
    quorum, the same for 1 or 3 nodes). ``replication`` sets the internal topics'
    replication factor and ``min.insync.replicas`` stays 1: a development cluster.
    """
    names = [lst.name for lst in listeners]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate listener names: {names}")
    clients = [lst for lst in listeners if not lst.controller]
    if "broker" in roles and not clients:
        raise ValueError("a broker needs at least one non-controller listener")
    if "controller" in roles and controller_listener not in names:
        raise ValueError(f"a controller needs a listener named {controller_listener!r}")
    if not voters:
        raise ValueError("voters must name at least one controller")
    protocols = {lst.name: lst.protocol for lst in listeners}
    protocols.setdefault(controller_listener, "PLAINTEXT")
    cfg = {
        "process.roles": ",".join(roles),
        "node.id": str(node_id),
        "controller.quorum.voters": ",".join(f"{n}@{a}" for n, a in sorted(voters.items())),
        "controller.listener.names": controller_listener,
        "listeners": ",".join(f"{lst.name}://{lst.address}" for lst in listeners),
        "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocols.items()),
        "log.dirs": str(log_dir),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": str(replication),
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(message_max_bytes),
        "replica.fetch.max.bytes": str(message_max_bytes),
        "unclean.leader.election.enable": "false",
    }
    if "broker" in roles:
        cfg["advertised.listeners"] = ",".join(f"{c.name}://{c.address}" for c in clients)
        cfg["inter.broker.listener.name"] = inter_broker_listener or clients[0].name
    cfg.update(overrides or {})
    return cfg


def docker_image(version: str = DEFAULT_VERSION) -> str:
    return f"{DOCKER_IMAGE_REPO}:{version}"


def docker_kafka_env(host_port: int, *, cluster_id: str) -> dict[str, str]:
    """Environment of a single-node KRaft ``apache/kafka`` container whose client port is
    published on ``host_port`` of 127.0.0.1: the same ``broker_config`` as the local broker,
    as the image's ``KAFKA_*`` variables (dots become underscores)."""
    client = Listener("PLAINTEXT", DOCKER_CLIENT_PORT, host="0.0.0.0")
    ctrl = Listener("CONTROLLER", DOCKER_CONTROLLER_PORT, host="localhost", controller=True)
    cfg = broker_config(
        1, [client, ctrl], log_dir="/tmp/kraft-combined-logs", voters={1: ctrl.address},
        # clients reach the broker through the published port, not the container's own
        overrides={"advertised.listeners": f"PLAINTEXT://127.0.0.1:{host_port}"},
    )  # fmt: skip
    env = {"KAFKA_" + key.upper().replace(".", "_"): value for key, value in cfg.items()}
    env["CLUSTER_ID"] = cluster_id
    return env


def sasl_acl_overrides(users: Mapping[str, str], admin: str = "admin") -> dict[str, str]:
    """Overrides that turn LocalKafka's client listener into SASL/PLAIN with ACLs enforced.

    ``users`` maps user name -> password (``admin`` must be one: the super user the
    readiness probe and provisioning connect as). The controller listener stays PLAINTEXT on
    loopback, so its principal (ANONYMOUS) is a super user too. For tests of authorisation
    (vendor isolation), not for production."""
    if admin not in users:
        raise ValueError(f"users must include the admin user {admin!r}")
    plain = " ".join(f'user_{u}="{p}"' for u, p in sorted(users.items()))
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{admin}" password="{users[admin]}" {plain};'
    )
    return {
        "listener.security.protocol.map": "PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.plaintext.plain.sasl.jaas.config": jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{admin};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


def render_properties(cfg: Mapping[str, str]) -> str:
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("\n", "\\n")

    return "".join(f"{esc(k)}={esc(v)}\n" for k, v in cfg.items())


# ------------------------------------------------------------------------ storage


def java_command(libs: Path, logs_dir: Path) -> list[str]:
    """``java`` with the Kafka classpath and our log4j2 config (logs in ``logs_dir``)."""
    return [
        "java",
        f"-Dkafka.logs.dir={logs_dir}",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={DEPLOY_DIR / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
    ]


def new_kafka_uuid() -> str:
    """A random Kafka Uuid (cluster.id, directory.id): 22 chars of url-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def bootstrap_checkpoint(
    version: str = DEFAULT_VERSION, cache_dir: Path | str | None = None
) -> Path:
    """The ``bootstrap.checkpoint`` that ``kafka-storage format`` writes for ``version``.

    With a static quorum (``controller.quorum.voters``) formatting writes only this file
    (feature levels, independent of ports, ids and paths) and a text ``meta.properties``,
    so it runs once per cache and ``write_storage`` copies it: that saves a JVM start
    (~2-3 s) per broker.
    """
    libs = resolve_jars(version, cache_dir)
    home = libs.parent
    if (home / CHECKPOINT).is_file():
        return home / CHECKPOINT
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / CHECKPOINT).is_file():
            return home / CHECKPOINT
        with tempfile.TemporaryDirectory(dir=home) as tmp:
            ctrl = Listener("CONTROLLER", 9, controller=True)  # ports: never bound
            cfg = broker_config(
                1, [Listener("PLAINTEXT", 7), ctrl], log_dir=f"{tmp}/data", voters={1: ctrl.address}
            )
            Path(tmp, "server.properties").write_text(render_properties(cfg))
            cmd = [
                *java_command(libs, Path(tmp)),
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_kafka_uuid(),
                "-c",
                f"{tmp}/server.properties",
            ]
            fmt = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            if fmt.returncode != 0:
                raise KafkaLauncherError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
            os.replace(Path(tmp, "data", CHECKPOINT), home / CHECKPOINT)
    return home / CHECKPOINT


def write_storage(data_dir: Path, checkpoint: Path, *, node_id: int, cluster_id: str) -> None:
    """Lay out a formatted KRaft log dir, as ``kafka-storage format`` would (static quorum)."""
    data_dir.mkdir(parents=True)
    shutil.copyfile(checkpoint, data_dir / CHECKPOINT)
    (data_dir / "meta.properties").write_text(
        f"node.id={node_id}\ndirectory.id={new_kafka_uuid()}\nversion=1\ncluster.id={cluster_id}\n"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def terminate_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL and wait again."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
    raise KafkaLauncherError(f"process {pid} survived SIGKILL")


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` making the child get SIGKILL when its parent (thread) dies."""

    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

    def preexec() -> None:
        if libc is not None:
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


MEMORY_DIR = Path("/dev/shm")
MEMORY_DIR_MIN_FREE = 2 * 1024**3


def workdirs_base(memory_dir: Path = MEMORY_DIR) -> Path:
    """Where local brokers keep their logs: `LOCAL_KAFKA_DIR` if set, else a memory-backed
    directory when one with room exists, else the temp dir. A broker's first writes to a
    fresh partition fault in pages of its memory-mapped index files; on a virtual disk that
    was seen to cost ~1 s per produce request touching ~100 new partitions, so tests and
    benches measured the disk, not the engine. Data of a local broker is disposable anyway."""
    configured = os.environ.get("LOCAL_KAFKA_DIR")
    if configured:
        return Path(configured)
    name = f"local-kafka-{os.getuid()}"
    with contextlib.suppress(OSError):
        if os.access(memory_dir, os.W_OK) and (
            shutil.disk_usage(memory_dir).free >= MEMORY_DIR_MIN_FREE
        ):
            return memory_dir / name
    return Path(tempfile.gettempdir()) / name


def sweep_stale_workdirs(base: Path) -> None:
    """Remove work dirs left by owners that were SIGKILLed (their JVM died with them)."""
    for d in base.glob("kafka-*"):
        try:
            pids = json.loads((d / "owner.json").read_text())["pids"]
        except (OSError, ValueError, KeyError):
            continue
        if not any(pid_alive(int(p)) for p in pids):
            shutil.rmtree(d, ignore_errors=True)


def new_workdir() -> Path:
    """A fresh private work dir for one broker, after sweeping stale ones."""
    base = workdirs_base()
    base.mkdir(parents=True, exist_ok=True)
    sweep_stale_workdirs(base)
    return Path(tempfile.mkdtemp(prefix="kafka-", dir=base))
