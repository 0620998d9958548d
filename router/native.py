"""Optional native build of the hot pure-core modules with mypyc (`make native`).

The listed modules are plain, strictly typed Python; mypyc compiles them to C extensions that
sit next to the sources and shadow them on import. Behaviour is identical (the SLA transcript
test pins the bytes of every output either way); the compiled firing path is several times
faster. Without a C compiler the sources run as they are.

A stale extension would silently shadow an edited source, so the build writes a manifest of
source digests and `status` (and a unit test) refuses a build that no longer matches:

    python -m router.native build     # compile MODULES in place (~1 min)
    python -m router.native status    # compiled / stale / pure, per module; exit 1 if stale
    python -m router.native clean     # remove the extensions: back to pure Python

`ROUTER_NATIVE=off` in the environment runs the sources even where a build is present.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The SLA firing path (issue 4) and what it calls per firing. Paths relative to ROOT.
MODULES: tuple[str, ...] = (
    "router/sla/calendar.py",
    "router/sla/clocks.py",
    "router/sla/escalation.py",
    "router/sla/events.py",
    "router/sla/lifecycle.py",
    "router/sla/outputs.py",
    "router/sla/state.py",
    "router/sla/terms.py",
    "router/sla/transitions.py",
    "router/sla/values.py",
)
# One shared library for the group, inside the `router` package so that the editable install's
# finder resolves it from any working directory (a top-level name would need the repo on path).
GROUP = "router.native_core"
MANIFEST = ROOT / "router" / "native-manifest.json"
BUILD_DIR = ROOT / "build" / "native"
_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def extensions_of(path: str) -> list[Path]:
    """The compiled extension files that shadow source `path` (none when pure)."""
    source = ROOT / path
    stem = source.name.removesuffix(".py")
    return [p for p in source.parent.glob(f"{stem}.*") if p.name.endswith(_SUFFIXES)]


def digest(path: str) -> str:
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


def status() -> dict[str, str]:
    """Per module: `compiled` (extension matches the source), `stale` or `pure`."""
    built = _manifest().get("modules", {})
    states = {}
    for path in MODULES:
        if not extensions_of(path):
            states[path] = "pure"
        elif built.get(path) == digest(path):
            states[path] = "compiled"
        else:
            states[path] = "stale"
    return states


def compiled_modules() -> list[str]:
    """Dotted names of the modules that import from an extension in this process."""
    names = []
    for path in MODULES:
        module = sys.modules.get(module_name(path))
        if module is not None and str(getattr(module, "__file__", "")).endswith(_SUFFIXES):
            names.append(module_name(path))
    return names


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Imports the MODULES from their `.py` sources even where an extension is built."""

    def __init__(self) -> None:
        self.paths = {module_name(path): ROOT / path for path in MODULES}

    def find_spec(
        self, name: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        source = self.paths.get(name)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(name, source)


def prefer_sources() -> None:
    """Run the pure-Python modules in this process (`ROUTER_NATIVE=off`): to bisect a
    suspected difference without rebuilding. Call before the SLA modules are imported."""
    if not any(isinstance(finder, _SourcesFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())


def native_build_of(obj: object) -> bool:
    """Whether a class or function comes from a compiled module in this process."""
    module = sys.modules.get(getattr(obj, "__module__", ""))
    return str(getattr(module, "__file__", "")).endswith(_SUFFIXES)


def slot_copier(cls: type, fields: tuple[str, ...], copy: tuple[str, ...] = ()) -> Any:
    """For the pure-Python build: a method copying `fields` onto a bare instance (`copy`:
    fields given a `.copy()`), generated as dataclasses generates `__init__`. Slot by slot on
    `object.__new__` is 4x cheaper than a keyword `__init__` in the interpreter; compiled, the
    plain `__init__` is the fast one (and a native class refuses `object.__new__`)."""
    lines = ["def copier(self):", "    new = new_instance(cls)"]
    for name in fields:
        if not name.isidentifier():
            raise ValueError(f"not a field name: {name!r}")
        lines.append(f"    new.{name} = self.{name}{'.copy()' if name in copy else ''}")
    lines.append("    return new")
    namespace: dict[str, Any] = {"new_instance": object.__new__, "cls": cls}
    exec("\n".join(lines), namespace)  # field names checked above
    copier = namespace["copier"]
    copier.__qualname__ = f"{cls.__qualname__}.copier"
    return copier


def _manifest() -> dict[str, Any]:
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def clean() -> None:
    # what the last build wrote (a module since dropped from MODULES included), and MODULES'
    built = [ROOT / name for name in _manifest().get("files", [])]
    for extension in built + [e for path in MODULES for e in extensions_of(path)]:
        extension.unlink(missing_ok=True)
    for library in (ROOT / "router").glob("native_core__mypyc.*"):
        if library.name.endswith(_SUFFIXES):
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
    print("usage: python -m router.native [build|status|clean]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
