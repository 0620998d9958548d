"""Read a ruleset (or golden-case) file: YAML or JSON text -> plain data plus a line map.

The line map takes a path into the data (`("rules", 3, "when", "all", 1)`) to the 1-based
line where that element starts, so that every validation problem can name its line.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from json import scanner as json_scanner
from typing import Any

import yaml

Path = tuple[str | int, ...]
_SCANNER: Any = json_scanner
MAX_DOCUMENT_CHARS = 32 << 20


@dataclass(frozen=True, slots=True)
class SourceDoc:
    file: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Sequence[object]) -> int | None:
        """Line of the deepest element of `path` that exists (pydantic locs welcome)."""
        found = self.lines.get((), None)
        node: Any = self.data
        walked: list[str | int] = []
        for part in path:
            if not _has(node, part) or not isinstance(part, str | int):
                continue  # a pydantic union tag or a missing key: stay on the parent
            node = node[part]
            walked.append(part)
            found = self.lines.get(tuple(walked), found)
        return found


def _has(node: Any, part: object) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


class LoadError(Exception):
    def __init__(self, file: str, line: int | None, message: str) -> None:
        super().__init__(f"{file}:{line or '?'}: {message}")
        self.file = file
        self.line = line
        self.message = message


def detect_format(file: str, text: str) -> str:
    lower = file.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


def parse_text(text: str, file: str = "<string>", fmt: str | None = None) -> SourceDoc:
    """Parse YAML or JSON; raise LoadError (with the line) when the text does not parse."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise LoadError(file, None, f"document larger than {MAX_DOCUMENT_CHARS} characters")
    fmt = fmt or detect_format(file, text)
    if fmt == "json":
        return _parse_json(text, file)
    return _parse_yaml(text, file)


# --- YAML -----------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML without aliases: `*name` could expand a small file into a huge document."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            peek: Any = self.peek_event  # untyped in the PyYAML stubs
            mark = peek().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)


def _parse_yaml(text: str, file: str) -> SourceDoc:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise LoadError(file, line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise LoadError(file, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[Path, int] = {}
    if node is not None:
        _yaml_lines(node, data, (), lines)
    return SourceDoc(file, data, lines)


def _yaml_lines(node: yaml.Node, data: Any, path: Path, out: dict[Path, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode) and isinstance(data, dict):
        for key_node, value_node in node.value:
            key = key_node.value
            if key in data:
                _yaml_lines(value_node, data[key], (*path, key), out)
                out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode) and isinstance(data, list):
        for i, (item_node, item) in enumerate(zip(node.value, data, strict=False)):
            _yaml_lines(item_node, item, (*path, i), out)


# --- JSON -----------------------------------------------------------------------------------


def _parse_json(text: str, file: str) -> SourceDoc:
    spans: dict[int, tuple[int, int]] = {}  # id(container) -> [start, end) offsets
    keepalive: list[Any] = []
    # The pure-Python scanner's parse hooks are stable CPython API but absent from typeshed.
    decoder: Any = json.JSONDecoder()
    hooks: Any = json.decoder

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
        obj, end = hooks.JSONObject(s_and_end, *args)
        spans[id(obj)] = (s_and_end[1] - 1, end)
        keepalive.append(obj)
        return obj, end

    def parse_array(s_and_end: tuple[str, int], scan_once: Any) -> tuple[Any, int]:
        arr, end = hooks.JSONArray(s_and_end, scan_once)
        spans[id(arr)] = (s_and_end[1] - 1, end)
        keepalive.append(arr)
        return arr, end

    decoder.parse_object = parse_object
    decoder.parse_array = parse_array
    decoder.scan_once = _SCANNER.py_make_scanner(decoder)
    try:
        data = decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise LoadError(file, exc.lineno, f"invalid JSON: {exc.msg}") from None
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line_at(offset: int) -> int:
        return bisect.bisect_left(newlines, offset) + 1

    lines: dict[Path, int] = {}

    def walk(value: Any, path: Path, line: int) -> None:
        span = spans.get(id(value))
        if span is not None:
            line = line_at(span[0])
        lines[path] = line
        if isinstance(value, dict):
            pos = span[0] + 1 if span is not None else 0
            for k, v in value.items():
                key_line = line
                m = re.compile(re.escape(json.dumps(k, ensure_ascii=False)) + r"\s*:").search(
                    text, pos
                )
                if m is not None:
                    key_line = line_at(m.start())
                    pos = m.end()
                inner = spans.get(id(v))
                walk(v, (*path, k), key_line)
                lines[(*path, k)] = key_line
                if inner is not None:
                    pos = max(pos, inner[1])
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i), line)

    walk(data, (), 1)
    return SourceDoc(file, data, lines)
