"""Build or remove the native extensions of `router.native.MODULES` (`make native`).

    python -m router.native_build build     # compile MODULES in place (~1 min)
    python -m router.native_build status    # compiled / stale / pure, per module; 1 if stale
    python -m router.native_build clean     # remove the extensions: back to pure Python

A separate module from `router.native`, which `router/__init__.py` imports on every start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from router.native import (
    MANIFEST,
    MODULES,
    ROOT,
    digest,
    extensions_of,
    is_extension,
    read_manifest,
    status,
)

# One shared library for the group, inside the `router` package so that the editable install's
# finder resolves it from any working directory (a top-level name would need the repo on path).
GROUP = "router.native_core"
BUILD_DIR = ROOT / "build" / "native"


def clean() -> None:
    # what the last build wrote (a module since dropped from MODULES included), and MODULES'
    built = [ROOT / name for name in read_manifest().get("files", [])]
    for extension in built + [e for path in MODULES for e in extensions_of(path)]:
        extension.unlink(missing_ok=True)
    for library in (ROOT / "router").glob("native_core__mypyc.*"):
        if is_extension(library):
            library.unlink()
    MANIFEST.unlink(missing_ok=True)
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


def compiler_available() -> bool:
    return shutil.which("cc") is not None or shutil.which("gcc") is not None


def build() -> int:
    """Compile MODULES in place; on failure leave the sources pure (never a partial build)."""
    if not compiler_available():  # not an error: the sources run as they are, slower
        print("native: no C compiler found; the pure-Python modules stay in use", file=sys.stderr)
        return 0
    clean()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    sources = {path: digest(path) for path in MODULES}
    script = BUILD_DIR / "setup.py"
    script.write_text(
        textwrap.dedent(
            f"""\
            from setuptools import setup
            from mypyc.build import mypycify

            setup(
                name="router-native",
                ext_modules=mypycify(
                    {list(MODULES)!r},
                    opt_level="3",
                    group_name={GROUP!r},
                    target_dir={str(BUILD_DIR / "c")!r},
                ),
            )
            """
        )
    )
    log = BUILD_DIR / "build.log"
    print(f"native: compiling {len(MODULES)} modules with mypyc (~1 min; log: {log})", flush=True)
    started = time.monotonic()
    with log.open("w") as out:
        command = [sys.executable, str(script), "build_ext", "--inplace"]
        command += ["--build-temp", str(BUILD_DIR / "temp"), "--build-lib", str(BUILD_DIR / "lib")]
        result = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        clean_keep_log(log)
        print(f"native: build failed (exit {result.returncode}); see {log}", file=sys.stderr)
        return result.returncode
    files = [str(e.relative_to(ROOT)) for path in MODULES for e in extensions_of(path)]
    files += [str(p.relative_to(ROOT)) for p in (ROOT / "router").glob("native_core__mypyc.*")]
    manifest = {"modules": sources, "files": sorted(files)}
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"native: built in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def clean_keep_log(log: Path) -> None:
    text = log.read_text() if log.exists() else ""
    clean()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    log.write_text(text)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "build":
        return build()
    if command == "clean":
        clean()
        print("native: removed; pure Python in use")
        return 0
    if command == "status":
        states = status()
        for path, state in states.items():
            print(f"{state:9} {path}")
        return 1 if "stale" in states.values() else 0
    print("usage: python -m router.native_build [build|status|clean]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
