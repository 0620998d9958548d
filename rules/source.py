"""YAML or JSON source text -> plain data plus a line map: the one loader of every input file.

Rulesets, golden cases, simulation contexts, SLA policy files, vendor profile files and
settings files are all read here, so that all of them refuse the same things with the same
`file:line: field: message` errors:

- a key given twice in one mapping (YAML) or object (JSON): both parsers would keep the last
  copy silently, so the meaning of a file would hang on which copy a reader noticed;
- YAML aliases (`*name`: a small file could expand into a huge document) and merge keys
  (`<<`), unless the caller allows them (`aliases=True`: the operator's own SLA policy and
  settings files, validated by typed models); keys that are not scalars; tags other than
  YAML's own scalar types;
- nesting deeper than `MAX_DEPTH` and documents larger than `MAX_DOCUMENT_CHARS`.

The line map takes a path into the data (`("rules", 3, "when", "all", 1)`) to the 1-based
line where that element starts, so that every validation problem can name its line.
"""

from __future__ import annotations

import bisect
import gc
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from json import scanner as json_scanner
from typing import Any

import yaml
from pydantic import ValidationError

Path = tuple[str | int, ...]
_SCANNER: Any = json_scanner
MAX_DOCUMENT_CHARS = 32 << 20
MAX_DEPTH = 64  # nested mappings and lists; a real ruleset's conditions stay far below


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

    def child(self, key: str | int) -> SourceDoc:
        """The document under `key` (e.g. the `data` of a CloudEvent), lines kept."""
        lines = {path[1:]: line for path, line in self.lines.items() if path[:1] == (key,)}
        return SourceDoc(self.file, self.data[key], lines)


def _has(node: Any, part: object) -> bool:
    if isinstance(node, dict):
        return isinstance(part, str) and part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`): user text inside a one-line message."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def dotted(path: Sequence[object]) -> str:
    """`rules[3].when.all[1]` for a path into the data."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = printable(str(part))
            out += f".{text}" if out else text
    return out


class LoadError(Exception):
    """The text does not parse, or parses into something refused; `field` is the dotted path
    of the element at fault when there is one."""

    def __init__(self, file: str, line: int | None, message: str, field: str | None = None):
        self.file = file
        self.line = line
        self.field = field
        self.message = f"{field}: {message}" if field else message
        super().__init__(f"{file}:{line or '?'}: {self.message}")


def validation_errors(
    src: SourceDoc, exc: ValidationError, base: Path = (), limit: int = 20
) -> list[str]:
    """A pydantic error of a model validated from `src` (or from its part at `base`) as
    `file:line: field: message` lines, the format of `LoadError` and the rules validator."""
    out = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        loc = (*base, *err["loc"])
        msg = printable(str(err["msg"]).removeprefix("Value error, "))
        out.append(f"{src.file}:{src.line(loc) or '?'}: {_loc_path(src, loc)}: {msg}")
    return out


def _loc_path(src: SourceDoc, loc: tuple[Any, ...]) -> str:
    """The dotted path of a pydantic loc, without the union tags it holds (`business_hours`):
    a key is kept when it is in the data, or last (a missing field)."""
    node: Any = src.data
    kept: list[object] = []
    for i, part in enumerate(loc):
        if _has(node, part):
            node = node[part]
        elif i < len(loc) - 1:
            continue
        kept.append(part)
    return dotted(kept) or "<document>"


def detect_format(file: str, text: str) -> str:
    lower = file.lower()
    if lower.endswith(".json"):
        return "json"
    if lower.endswith((".yaml", ".yml")):
        return "yaml"
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a document is loaded: it allocates hundreds of
    thousands of objects and no cycles, and the collections that so many allocations trigger
    took two thirds of the time of a 10,000-rule file. (Nesting is fine: the outermost
    pause restores the collector.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_text(
    text: str, file: str = "<string>", fmt: str | None = None, *, aliases: bool = False
) -> SourceDoc:
    """Parse YAML or JSON; raise LoadError (with the line) when the text does not parse or
    holds something refused (see the module's docstring)."""
    with gc_paused():
        return _parse_text(text, file, fmt, aliases)


def _parse_text(text: str, file: str, fmt: str | None, aliases: bool) -> SourceDoc:
    if len(text) > MAX_DOCUMENT_CHARS:
        raise LoadError(file, None, f"document larger than {MAX_DOCUMENT_CHARS} characters")
    fmt = fmt or detect_format(file, text)
    try:
        if fmt == "json":
            return _parse_json(text, file)
        return _parse_yaml(text, file, aliases)
    except RecursionError:
        raise LoadError(file, None, f"nested deeper than {MAX_DEPTH} levels") from None


def _duplicate(file: str, path: Path, key: object, first: int, again: int) -> LoadError:
    return LoadError(
        file, again, f"duplicate key at lines {first} and {again} (only one copy may be given)",
        dotted((*path, key if isinstance(key, str | int) else str(key))),
    )  # fmt: skip


def _too_deep(file: str, path: Path, line: int) -> LoadError:
    return LoadError(file, line, f"nested deeper than {MAX_DEPTH} levels", dotted(path) or None)


# --- YAML -----------------------------------------------------------------------------------

# libyaml's parser when present: the pure-Python one takes seconds on a 10,000-rule file.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")
)


class _YamlLoader(_BaseLoader):  # type: ignore[misc]  # a base class chosen at run time
    """Remembers the tag of each distinct plain scalar: a ruleset repeats its keys and values
    thousands of times, and the resolver's regexes cost more than the parse itself."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._plain_tags: dict[str, str] = {}

    def resolve(self, kind: Any, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is not yaml.ScalarNode or not implicit[0]:
            return str(super().resolve(kind, value, implicit))
        tag = self._plain_tags.get(value)
        if tag is None:  # no path resolvers: a plain scalar's tag depends on its text only
            first = value[:1]  # the resolvers are listed by the first character they accept
            known = first in self.yaml_implicit_resolvers or None in self.yaml_implicit_resolvers
            tag = super().resolve(kind, value, implicit) if known else _STR
            self._plain_tags[value] = tag
        return tag


def _parse_yaml(text: str, file: str, aliases: bool) -> SourceDoc:
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Path, int] = {}
        if node is None:  # an empty document
            return SourceDoc(file, None, {})
        data = _YamlBuilder(loader, file, text, lines, aliases).build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise LoadError(file, line, f"invalid YAML: {_one_line(exc.problem or exc)}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        raise LoadError(file, line, f"invalid YAML: {_one_line(exc.reason)} "
                                    f"(character {exc.character!r})") from None  # fmt: skip
    except yaml.YAMLError as exc:
        raise LoadError(file, None, f"invalid YAML: {_one_line(exc)}") from None
    finally:
        loader.dispose()
    return SourceDoc(file, data, lines)


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


class _YamlBuilder:
    """Plain data and its line map from the composed node tree, in one walk."""

    def __init__(
        self, loader: Any, file: str, text: str, lines: dict[Path, int], aliases: bool
    ) -> None:
        self.loader = loader
        self.file = file
        self.text = text
        self.lines = lines
        self.aliases = aliases
        self.started: set[int] = set()
        # An alias is handed out by the composer as its anchor's node: built once, shared,
        # never walked again (a chain of aliases cannot expand into a huge document).
        self.built: dict[int, Any] = {}

    def build(self, node: yaml.Node, path: Path) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        if id(node) in self.started:
            if not self.aliases:
                raise self._alias()
            if id(node) not in self.built:
                raise LoadError(self.file, line, "an alias refers to a node that contains it",
                                dotted(path) or None)  # fmt: skip
            return self.built[id(node)]
        self.started.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            value = self.built[id(node)] = self.scalar(node, path)
            return value
        if len(path) >= MAX_DEPTH:
            raise _too_deep(self.file, path, line)
        if isinstance(node, yaml.SequenceNode):
            self.check_tag(node, _SEQ, path)
            items = [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            self.built[id(node)] = items
            return items
        assert isinstance(node, yaml.MappingNode)
        self.check_tag(node, _MAP, path)
        out: dict[Any, Any] = {}
        first: dict[Any, int] = {}
        merges: list[tuple[yaml.Node, int]] = []
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                if not self.aliases:
                    raise LoadError(self.file, key_line, "merge keys (<<) are not allowed",
                                    dotted(path) or None)  # fmt: skip
                merges.append((value_node, key_line))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise LoadError(self.file, key_line, "a key must be a string or a number",
                                dotted(path) or None)  # fmt: skip
            if id(key_node) in self.started and not self.aliases:
                raise self._alias()
            self.started.add(id(key_node))
            key = self.scalar(key_node, path)
            if key in first:
                raise _duplicate(self.file, path, key, first[key], key_line)
            first[key] = key_line
            out[key] = self.build(value_node, (*path, key))
            self.lines[(*path, key)] = key_line
        if merges:
            out = self.merged(out, merges, path)
        self.built[id(node)] = out
        return out

    def merged(
        self, own: dict[Any, Any], merges: list[tuple[yaml.Node, int]], path: Path
    ) -> dict[Any, Any]:
        """`<<: *base` or `<<: [*a, *b]`: keys given here win, then earlier sources; the key
        order is PyYAML's (merged keys first), on which a policy file's fingerprint depends."""
        pairs: list[tuple[Any, Any, int]] = []
        for source, line in merges:
            nodes = source.value if isinstance(source, yaml.SequenceNode) else [source]
            built = []
            for node in nodes:
                value = self.build(node, (*path, "<<"))  # lines under a key the data lacks
                if not isinstance(value, dict):
                    raise LoadError(self.file, line, "a merge key (<<) takes mappings only",
                                    dotted(path) or None)  # fmt: skip
                built.append(value)
            pairs += [(k, v, line) for value in built for k, v in value.items()]
        out: dict[Any, Any] = {}
        for key, value, line in pairs:
            if key not in out:
                out[key] = value
                self.lines.setdefault((*path, key), line)
        out.update(own)
        return out

    def scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        if node.tag == _STR:
            return node.value
        self.check_tag(node, "", path)
        return self.loader.construct_object(node)

    def check_tag(self, node: yaml.Node, expected: str, path: Path) -> None:
        tag = node.tag
        if tag == expected or (not expected and tag in _SCALAR_TAGS):
            return
        raise LoadError(self.file, node.start_mark.line + 1, f"unsupported YAML tag {tag!r}",
                        dotted(path) or None)  # fmt: skip

    def _alias(self) -> LoadError:
        """Where the first alias is (the node tree does not say): from the parser's events."""
        line = None
        for event in yaml.parse(self.text, Loader=_YamlLoader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                line = mark.line + 1 if mark is not None else None
                break
        return LoadError(self.file, line, "invalid YAML: aliases (*name) are not allowed")


# --- JSON -----------------------------------------------------------------------------------


def _parse_json(text: str, file: str) -> SourceDoc:
    # id(container) -> (offset of its start, offsets of its keys' colons or of its items)
    where: dict[int, tuple[int, list[int]]] = {}
    duplicates: dict[int, tuple[Any, int, int]] = {}  # id(object) -> key, both offsets
    keepalive: list[Any] = []
    # The pure-Python scanner's parse hooks are stable CPython API but absent from typeshed.
    decoder: Any = json.JSONDecoder()
    hooks: Any = json.decoder

    def parse_object(
        s_and_end: tuple[str, int], strict: bool, scan_once: Any, *args: Any
    ) -> tuple[Any, int]:
        s = s_and_end[0]
        starts: list[int] = []
        got: list[list[tuple[Any, Any]]] = []

        def scan(s: str, idx: int) -> Any:
            starts.append(idx)
            return scan_once(s, idx)

        def pairs_hook(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
            got.append(pairs)
            return dict(pairs)

        obj, end = hooks.JSONObject(s_and_end, strict, scan, None, pairs_hook, *args[2:])
        # Only blanks and the colon lie between a key and its value.
        colons = [s.rfind(":", 0, i) for i in starts]
        if len(obj) != len(colons):
            firsts: dict[Any, int] = {}
            for (key, _), colon in zip(got[0], colons, strict=True):
                if key in firsts:
                    duplicates[id(obj)] = (key, firsts[key], colon)
                    break
                firsts[key] = colon
        where[id(obj)] = (s_and_end[1] - 1, colons)
        keepalive.append(obj)
        return obj, end

    def parse_array(s_and_end: tuple[str, int], scan_once: Any) -> tuple[Any, int]:
        starts: list[int] = []

        def scan(s: str, idx: int) -> Any:
            starts.append(idx)
            return scan_once(s, idx)

        arr, end = hooks.JSONArray(s_and_end, scan)
        where[id(arr)] = (s_and_end[1] - 1, starts)
        keepalive.append(arr)
        return arr, end

    decoder.parse_object = parse_object
    decoder.parse_array = parse_array
    decoder.scan_once = _SCANNER.py_make_scanner(decoder)
    try:
        data = decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise LoadError(file, exc.lineno, f"invalid JSON: {exc.msg}") from None
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_at(offset: int) -> int:
        return bisect.bisect_left(newlines, offset) + 1

    lines: dict[Path, int] = {}

    def walk(value: Any, path: Path, line: int) -> None:
        lines[path] = line
        found = where.get(id(value))
        if found is None:
            return
        if len(path) >= MAX_DEPTH:
            raise _too_deep(file, path, line)
        lines[path] = line = line_at(found[0])
        offsets = found[1]
        if isinstance(value, dict):
            dup = duplicates.get(id(value))
            if dup is not None:
                key, a, b = dup
                raise _duplicate(file, path, key, line_at(a), line_at(b))
            for (k, v), offset in zip(value.items(), offsets, strict=False):
                key_line = line_at(offset)
                walk(v, (*path, k), key_line)
                lines[(*path, k)] = key_line
        else:
            for i, (v, offset) in enumerate(zip(value, offsets, strict=True)):
                walk(v, (*path, i), line_at(offset))

    walk(data, (), 1)
    return SourceDoc(file, data, lines)
