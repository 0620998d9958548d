"""The peer's own virtualenv (`.cache/peer-venv`), created on demand by bench_pipeline.py.

quixstreams depends on confluent-kafka (librdkafka) and caps pydantic below what the engine's
venv has, so it cannot share `.venv`. The peer venv holds quixstreams and what the project's
pure core (`router`, `rules`, `schemas`, found through PYTHONPATH) imports on the routing
path; never faust. It is built from the interpreter the engine's venv was made from, so the
core's mypyc extensions (built for that Python) load in the peer too.

    python tests/bench/peer_venv.py   # create or check it, print its status line
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".cache" / "peer-venv"
# quixstreams chooses pydantic (< 2.14) and orjson; the rest is what the core's routing path
# (`tests/bench/peer_routing.py`: router.inbound, tickets, outputs, default_policy) imports.
REQUIREMENTS = (
    "quixstreams>=3.28,<3.29",
    "pydantic>=2.7,<3",
    "orjson>=3.10,<4",
    "google-re2>=1.1,<2",
    "pyyaml>=6,<7",
    "mypy-extensions>=1.0,<2",
)
# Run in the peer venv: fails unless quixstreams and the core's routing path import.
CHECK = (
    "import quixstreams, pydantic, tests.bench.peer_routing; "
    "print(f'quixstreams {quixstreams.__version__}, pydantic {pydantic.VERSION}')"
)
PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class PeerEnv:
    python: Path | None  # None: the peer cannot run, `reason` says why
    reason: str = ""
    versions: str = ""  # "quixstreams 3.28.1, pydantic 2.13.5"


def _stamp() -> str:
    spec = "\n".join((sys.version, *REQUIREMENTS))
    return hashlib.sha256(spec.encode()).hexdigest()


def _run(command: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run, return stdout; raise RuntimeError with the last lines of the output on failure."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        took = f"{Path(command[0]).name} {' '.join(command[1:3])} took over {timeout:.0f} s"
        raise RuntimeError(took) from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        said = [line for line in lines if line.startswith("ERROR")][-1:] or lines[-1:]
        raise RuntimeError(said[0] if said else f"exit status {done.returncode}")
    return done.stdout.strip()


def _check(python: Path) -> str:
    """quixstreams' and pydantic's versions, once the core's routing path imports there."""
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return _run([str(python), "-c", CHECK], 120, env)


def ensure_peer_venv(say: object = print) -> PeerEnv:
    """Create (or reuse) the peer venv; never raises: a failure is a reason to skip the peer."""
    assert callable(say)
    python, stamp = VENV / "bin" / "python", VENV / ".installed"
    if python.exists() and stamp.exists() and stamp.read_text() == _stamp():
        try:
            return PeerEnv(python, versions=_check(python))
        except RuntimeError as exc:
            say(f"peer: {VENV.relative_to(REPO)} does not work ({exc}); recreating it")
    say(
        f"peer: creating {VENV.relative_to(REPO)} ({REQUIREMENTS[0]} and the core's runtime "
        "dependencies; about a minute) ...",
    )
    started = time.monotonic()
    try:
        stamp.unlink(missing_ok=True)
        # `python -m venv` from the engine's venv builds on that venv's base interpreter.
        _run([sys.executable, "-m", "venv", "--clear", str(VENV)], 120)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--retries", "2"]
        _run([*pip, "install", "--quiet", *REQUIREMENTS], PIP_TIMEOUT_S)
        version = _check(python)
    except (RuntimeError, OSError) as exc:
        return PeerEnv(None, reason=f"its venv could not be created: {exc}")
    stamp.write_text(_stamp())
    say(f"peer: {version} ready in {time.monotonic() - started:.0f} s")
    return PeerEnv(python, versions=version)


if __name__ == "__main__":
    env = ensure_peer_venv()
    print(f"peer venv: {env.python} ({env.versions})" if env.python else env.reason)
    sys.exit(0 if env.python else 1)
