"""podman for the tests that build and run the engine's image (deploy/): the machine's
settings (deploy/container/containers.conf) and small helpers."""

from __future__ import annotations

import os
import subprocess

from tests.harness import REPO

CONTAINERS_CONF = REPO / "deploy" / "container" / "containers.conf"


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stderr[-2000:]}")
    return done.stdout


def logs(name: str) -> str:
    """What the container wrote (the worker logs to stderr, which `podman logs` keeps apart)."""
    done = subprocess.run(["podman", "logs", name], env=podman_env(), capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    return done.stdout + done.stderr
