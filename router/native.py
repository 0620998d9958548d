"""Optional native build of the hot pure-core modules with mypyc: what runs in every process.

The listed modules are plain, strictly typed Python; mypyc compiles them to C extensions that
sit next to the sources and shadow them on import (`router/native_build.py`, `make native`).
Behaviour is identical (the SLA transcript test pins the bytes of every output either way).

A build records the digest of every source. `router/__init__.py` checks it on import: an
extension built before its source's last edit is never run (the sources are, with a message
on stderr), and `ROUTER_NATIVE=off` runs the sources even where a build is present.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The SLA firing path (issue 4) and what it calls per firing, and the rule evaluator's
# decision path (issue 3: facts, text scan, candidate chains). Paths relative to ROOT.
MODULES: tuple[str, ...] = (
    "router/sla/calendar.py",
    "router/sla/clocks.py",
    "router/sla/escalation.py",
    "router/sla/events.py",
    "router/sla/instants.py",
    "router/sla/lifecycle.py",
    "router/sla/outputs.py",
    "router/sla/state.py",
    "router/sla/terms.py",
    "router/sla/transitions.py",
    "router/sla/values.py",
    "router/stages/lifecycle.py",
    "router/stages/routing.py",
    "router/outputs.py",
    "router/ids.py",
    "router/inbound.py",
    "router/default_policy.py",
    "router/stages/ticket_index.py",
    "router/buyers.py",
    "router/reroutes.py",
    "rules/chain.py",
    "rules/compile.py",
    "rules/facts.py",
    "rules/textmatch.py",
)
MANIFEST = ROOT / "router" / "native-manifest.json"
_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def is_extension(file: Path | str) -> bool:
    """Whether `file` names a compiled extension module (`.cpython-311-x86_64-linux-gnu.so`...)."""
    return str(file).endswith(_SUFFIXES)


def extensions_of(path: str) -> list[Path]:
    """The compiled extension files that shadow source `path` (none when pure)."""
    source = ROOT / path
    stem = source.name.removesuffix(".py")
    return [p for p in source.parent.glob(f"{stem}.*") if is_extension(p)]


def sources_requested() -> bool:
    """`ROUTER_NATIVE=off` (or 0 / false / no): run the sources even where a build exists."""
    return os.environ.get("ROUTER_NATIVE", "").lower() in ("0", "off", "false", "no")


def digest(path: str) -> str:
    return hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


def status() -> dict[str, str]:
    """Per module: `compiled` (extension matches the source), `stale` or `pure`."""
    built = read_manifest().get("modules", {})
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
    names = [module_name(path) for path in MODULES]
    return [name for name in names if _from_extension(sys.modules.get(name))]


def _from_extension(module: object) -> bool:
    return module is not None and is_extension(getattr(module, "__file__", None) or "")


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
    return _from_extension(sys.modules.get(getattr(obj, "__module__", "")))


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


def read_manifest() -> dict[str, Any]:
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}
