"""`make dist`: the wheel carries this platform's compiled modules and runs them once installed
outside the checkout; the sdist is the sources only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from router.native import MANIFEST, MODULES, status

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    any(state != "compiled" for state in status().values()),
    reason="no native build here (`make native`; make test builds it and requires it)",
)


@pytest.fixture(scope="module")
def dist() -> Path:
    """`make dist`, as a user runs it (the native build is already there)."""
    done = subprocess.run(["make", "--no-print-directory", "dist"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return REPO / "dist"


def test_the_wheel_runs_the_compiled_modules_outside_the_checkout(
    dist: Path, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("*.whl")
    assert "-none-any" not in wheel.name  # a platform wheel: it carries extensions
    built = json.loads(MANIFEST.read_text())["files"]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert set(built) <= names
    assert {"router/native-manifest.json", *MODULES} <= names  # the sources stay beside them
    # every file of the packages, data included (a default policy missing from the wheel
    # only shows when an installed worker starts)
    packaged = {
        str(path.relative_to(REPO))
        for package in ("router", "streams", "rules", "schemas")
        for path in (REPO / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert sorted(packaged - names) == []

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("ROUTER_NATIVE", None)

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run("-m", "router", "--version").strip() == "ticket-router 0.1.0"
    statuses = run("-m", "router.native_build", "status")
    assert statuses.count("compiled") == len(MODULES), statuses
    where = run("-c", "import router.sla.clocks as m; print(m.__file__)").strip()
    assert where.startswith(str(site)), where
    assert where.endswith(".so"), where


def test_the_sdist_is_the_sources_only(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    assert not [n for n in names if n.endswith(".so")]
    assert "router/native-manifest.json" not in names
    assert set(MODULES) <= set(names)
