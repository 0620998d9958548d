"""Structure-aware fuzzing of input documents: mutations of a valid document (drop, duplicate
and retype fields, NaN / infinities / huge numbers, deep nesting, huge strings) and the
serialisers that write them out, a key twice included."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

import yaml
from hypothesis import strategies as st

Path = tuple[str | int, ...]

WEIRD_NUMBERS = [float("nan"), float("inf"), float("-inf"), 1e300, -1e300, 10**30, -(10**30),
                 2**63, -1, 0, 0.5, -0.0]  # fmt: skip
WEIRD_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(WEIRD_NUMBERS),
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["", " ", "x" * 70_000, "[red]x[/red]", "^[a-z0-9-]{0,63}$", "\x00",
                     "8h", "-5m", "1d", "dept:general", "vendor:acme", "2025-01-01"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)  # fmt: skip


def paths(doc: Any, prefix: Path = ()) -> list[Path]:
    """Every path into `doc` (the root excluded)."""
    out: list[Path] = []
    items: list[tuple[str | int, Any]] = (
        list(doc.items()) if isinstance(doc, dict) else list(enumerate(doc))
        if isinstance(doc, list) else []
    )  # fmt: skip
    for key, value in items:
        out.append((*prefix, key))
        out.extend(paths(value, (*prefix, key)))
    return out


def _parent(doc: Any, path: Path) -> tuple[Any, str | int] | None:
    node = doc
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(node, dict) and path[-1] in node:
        return node, path[-1]
    if isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        return node, path[-1]
    return None


@dataclass
class Mutated:
    doc: Any
    duplicate: Path | None  # the mapping whose first key is written twice, if any


def nested(value: Any, depth: int) -> Any:
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@st.composite
def mutated(draw: st.DrawFn, base: Any, duplicates: bool = True) -> Mutated:
    """`base` with a few mutations, and maybe a mapping to write with a key twice."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 3))):
        all_paths = paths(doc)
        if not all_paths:
            break
        path = draw(st.sampled_from(all_paths))
        found = _parent(doc, path)
        if found is None:
            continue
        node, key = found
        op = draw(st.sampled_from(["drop", "retype", "retype", "copy", "nest", "rename"]))
        if op == "drop":
            del node[key]
        elif op == "retype":
            node[key] = draw(WEIRD_VALUES)
        elif op == "copy" and isinstance(node, list):
            node.append(copy.deepcopy(node[key]))  # type: ignore[index]
        elif op == "nest":
            node[key] = nested(node[key], draw(st.sampled_from([1, 3, 70, 200])))
        elif op == "rename" and isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=8))] = node.pop(key)
    duplicate = None
    if duplicates and draw(st.booleans()):
        mappings = [p for p in [(), *paths(doc)] if isinstance(_get(doc, p), dict) and _get(doc, p)]
        if mappings:
            duplicate = draw(st.sampled_from(mappings))
    return Mutated(doc, duplicate)


def _get(doc: Any, path: Path) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def dump_json(doc: Any, duplicate: Path | None = None) -> str:
    """JSON text of `doc` (NaN and Infinity as Python writes them), the first key of the
    mapping at `duplicate` written twice: first with another value, then with its own."""

    def write(value: Any, path: Path) -> str:
        if isinstance(value, dict):
            pairs = [(json.dumps(str(k)), write(v, (*path, k))) for k, v in value.items()]
            if path == duplicate and pairs:
                pairs.insert(0, (pairs[0][0], json.dumps("other")))
            return "{" + ",\n".join(f"{k}: {v}" for k, v in pairs) + "}"
        if isinstance(value, list):
            return "[" + ",\n".join(write(v, (*path, i)) for i, v in enumerate(value)) + "]"
        return json.dumps(value)

    return write(doc, ())


def dump_yaml(doc: Any, duplicate: Path | None = None) -> str:
    """YAML text of `doc`; with `duplicate`, the flow-style JSON of it (JSON is YAML), which
    writes a key twice where YAML's dumper cannot."""
    if duplicate is not None:
        return dump_json(doc, duplicate).replace("NaN", ".nan").replace("Infinity", ".inf")
    return yaml.safe_dump(doc, allow_unicode=True)


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)
