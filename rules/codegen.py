"""Conditions compiled to Python functions, one per rule, for the compiled evaluator.

A rule's residual conditions (those its index entry has not already settled) become

    def check(f):
        if not (f.msg_fields['channel'] == _k0): return _k1         # first failing -> its text
        if not ((_v2 := f.intents()) is not None and not _k3.isdisjoint(_v2)): return _k4
        if not (_k5 in f.regex_hits(_k6)): return _k7     # RE2 runs only when reached
        return None

Hot fields are read inline; the others call their registered getter. Every literal, reason
text and helper is bound by name in the function's namespace: document values never become
source text, so a ruleset cannot inject code. The reason returned for a failing top-level
conjunct is the text the reference evaluator (`rules.naive.first_failure`) gives for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from rules.ast import AllOf, AnyOf, Cond, NotOf, Template, Test
from rules.closures import hours_test, number_test
from rules.facts import Facts
from rules.fields import FieldSpec, Kind
from rules.operators import present, same
from rules.textmatch import FieldMatcher, Matchers

Check = Callable[[Facts], Any]  # None when the conditions hold

LANGUAGE_BASES_MAX = 1024  # raw language tags whose base is kept (cleared when full)
_language_bases: dict[str | None, str | None] = {}
_MISSING = object()


def language_base(lang: str | None) -> str | None:
    """`message.language_base` (as `rules.fields` gets it), kept per raw tag: a message
    carries one of a few dozen tags, and split + lower would run on every decision."""
    base = lang.split("-", 1)[0].lower() if lang else None
    if len(_language_bases) >= LANGUAGE_BASES_MAX:
        _language_bases.clear()
    _language_bases[lang] = base
    return base


# Hot fields read inline. Message fields come from `Facts.msg_fields` (the pydantic
# instance's __dict__): a dict read costs a fraction of a pydantic attribute read.
INLINE: dict[str, str] = {
    "message.channel": "f.msg_fields['channel']",
    "message.vendor_id": "f.msg_fields['vendor_id']",
    "message.language_base": "(_lb if (_lb := _language_bases.get(_l := f.msg_fields['language'], "
    "_MISSING)) is not _MISSING else language_base(_l))",
    "message.order_id": "f.msg_fields['order_id']",
    "sender.role": "f.msg_fields['sender'].role",
    "sender.id": "f.msg_fields['sender'].id",
    "ticket.message_count": "f.ticket.message_count",
    "ticket.age_seconds": "f.ticket.age_seconds",
    "ticket.is_new": "f.ticket.is_new",
    "ticket.channel_count": "len(f.ticket.channels)",
    "ticket.age_hours": "(f.ticket.age_seconds / 3600.0)",
    "message.text": "f.text()",
    "message.body": "f.msg_fields['body']",
    "message.subject": "f.msg_fields['subject']",
    "vendor.known": "(f.vendor is not None)",
    "vendor.id": "(None if f.vendor is None else f.vendor.vendor_id)",
    "vendor.status": "(None if f.vendor is None else f.vendor.status)",
    "vendor.tier": "(None if f.vendor is None else f.vendor.tier)",
    "buyer.known": "(f.buyer is not None)",
    "buyer.vip": "(None if f.buyer is None else f.buyer.vip)",
    "buyer.open_tickets": "(None if f.buyer is None else f.buyer.open_tickets)",
    "buyer.recent_tickets": "(None if f.buyer is None else f.buyer.recent_tickets)",
    "buyer.lifetime_orders": "(None if f.buyer is None else f.buyer.lifetime_orders)",
    "now": "f.now",
    # vendor and order ids are never empty
    "message.vendor_id?": "(f.msg_fields['vendor_id'] is not None)",
    "message.order_id?": "(f.msg_fields['order_id'] is not None)",
}
# Names the inline expressions use, bound in every generated function's namespace.
INLINE_NAMES = {"_language_bases": _language_bases, "_MISSING": _MISSING,
                 "language_base": language_base}  # fmt: skip
_PY_OP = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# `Facts` attributes a function reading them more than once reads into a local first
# (`_hoisted`): an attribute read costs more than a local's, and an index key reads several
# message fields. The expressions are this module's own (INLINE), never document text (its
# values are bound by name), so the textual rename is exact.
_HOISTED = tuple(
    (attribute, f"_{attribute}", re.compile(rf"\bf\.{attribute}\b"))
    for attribute in ("msg_fields", "vendor", "buyer", "ticket")
)


def _hoisted(lines: list[str]) -> list[str]:
    """A generated function (`def` line first) with each `Facts` attribute that its body
    reads more than once read once, on entry (reads have no effects, so reading early and
    maybe needlessly is only a cost, smaller than the second read it saves)."""
    head, body = lines[0], "\n".join(lines[1:])
    reads = []
    for attribute, local, pattern in _HOISTED:
        if len(pattern.findall(body)) > 1:
            reads.append(f"    {local} = f.{attribute}")
            body = pattern.sub(local, body)
    return [head, *reads, body] if reads else lines


def _as_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _any_same(v: Any, options: tuple[Any, ...]) -> bool:
    return any(same(v, o) for o in options)


class CodeGen:
    """Generates and compiles check functions; one instance per compiled ruleset."""

    def __init__(self, matchers: Matchers) -> None:
        self.matchers = matchers
        self._n = 0

    def _name(self, ns: dict[str, Any], value: Any, prefix: str = "_k") -> str:
        name = f"{prefix}{self._n}"
        self._n += 1
        ns[name] = value
        return name

    def value(
        self, spec: FieldSpec, ns: dict[str, Any], hits: dict[tuple[int, str], str] | None = None
    ) -> str:
        """The expression of a field's value. `hits`: the locals holding text hits already
        read in this function (only where every expression runs, in order: index keys)."""
        inline = INLINE.get(spec.path)
        if inline is not None:
            return inline
        derived = self.matchers.derived(spec.path)  # intents, indexed phrase / regex hits
        if derived is None:
            return f"{self._name(ns, spec.getter, '_g')}(f)"
        matcher, method, attribute = derived
        read = f"f.{method}({self._name(ns, matcher)})"
        if hits is not None:
            local = hits.get((id(matcher), method))
            if local is not None:
                return f"{local}.{attribute}"
            local = hits[id(matcher), method] = self._name(ns, None, "_h")
            read = f"({local} := {read})"
        return f"{read}.{attribute}"

    def _test(self, t: Test, ns: dict[str, Any]) -> str:
        spec, op, lit, kind = t.spec, t.op, t.lit, t.spec.kind
        v = self.value(spec, ns)
        if op in ("eq", "ne"):
            if kind is Kind.ANY:
                expr = f"{self._name(ns, same)}({v}, {self._name(ns, lit)})"
            elif kind is Kind.BOOL:
                expr = f"({v} is {self._name(ns, lit)})"
            else:
                expr = f"({v} == {self._name(ns, lit)})"
            return expr if op == "eq" else f"(not {expr})"
        if op in ("in", "not_in"):
            if kind is Kind.ANY:
                expr = f"{self._name(ns, _any_same)}({v}, {self._name(ns, tuple(lit))})"
            else:
                expr = f"({v} in {self._name(ns, frozenset(lit))})"
            return expr if op == "in" else f"(not {expr})"
        if op == "exists":
            if kind is Kind.SET:
                expr = f"bool({v})"
            elif kind in (Kind.STR, Kind.TEXT):
                local = self._name(ns, None, "_v")
                expr = f"(({local} := {v}) is not None and {local} != '')"
            elif kind is Kind.ANY:
                expr = f"{self._name(ns, present)}({v})"
            else:
                expr = f"({v} is not None)"
            return expr if lit else f"(not {expr})"
        if op in ("contains", "contains_any"):
            members = (lit,) if op == "contains" else tuple(lit)
            if kind is Kind.SET:
                local = self._name(ns, None, "_v")
                wanted = self._name(ns, frozenset(members))
                return f"(({local} := {v}) is not None and not {wanted}.isdisjoint({local}))"
            matcher = self.matchers.of(spec.path, spec.getter)
            ids = frozenset(matcher.add_phrase(m) for m in members)
            hits = f"f.phrase_hits({self._name(ns, matcher)})"
            if len(ids) == 1:
                return f"({self._name(ns, next(iter(ids)))} in {hits})"
            return f"(not {self._name(ns, ids)}.isdisjoint({hits}))"
        if op == "matches":
            matcher = self.matchers.of(spec.path, spec.getter)
            index = self._name(ns, matcher.add_regex(lit.pattern))
            return f"({index} in f.regex_hits({self._name(ns, matcher)}))"
        if op in _PY_OP:
            if kind is Kind.ANY:
                return f"{self._name(ns, number_test(op, lit))}({v})"
            local = self._name(ns, None, "_v")
            bound = self._name(ns, lit)
            return f"(({local} := {v}) is not None and {local} {_PY_OP[op]} {bound})"
        return f"{self._name(ns, hours_test(spec.getter, lit))}(f)"  # within_hours

    def boolean(self, cond: Cond, ns: dict[str, Any]) -> str:
        if isinstance(cond, Test):
            return self._test(cond, ns)
        if isinstance(cond, NotOf):
            return f"(not {self.boolean(cond.item, ns)})"
        parts = [self.boolean(c, ns) for c in cond.items]
        if isinstance(cond, AllOf):
            return "(" + " and ".join(parts) + ")" if parts else "True"
        if isinstance(cond, AnyOf):
            return "(" + " or ".join(parts) + ")" if parts else "False"
        raise TypeError(f"not a condition: {cond!r}")

    def check(
        self, conjuncts: Sequence[Cond], label: str, failures: Sequence[Any] | None = None
    ) -> Check:
        """A function returning None when every conjunct holds, else the first failing one's
        text (or its entry in `failures`, e.g. a ready-made trace entry)."""
        ns: dict[str, Any] = {}
        lines = ["def check(f):"]
        for i, cond in enumerate(conjuncts):
            reason = self._name(ns, cond.text if failures is None else failures[i])
            lines.append(f"    if not {self.boolean(cond, ns)}: return {reason}")
        lines.append("    return None")
        return self._compile(lines, ns, label)["check"]  # type: ignore[no-any-return]  # exec'd

    def template(self, tpl: Template, label: str) -> Callable[[Facts], str | None]:
        """Render a tag or route template; None when a placeholder's field is absent."""
        ns: dict[str, Any] = {}
        lines = ["def render(f):"]
        pieces: list[str] = []
        for part in tpl.parts:
            if isinstance(part, str):
                pieces.append(self._name(ns, part))
                continue
            local = self._name(ns, None, "_v")
            lines.append(f"    {local} = {self.value(part, ns)}")
            lines.append(f"    if {local} is None or {local} == '': return None")
            if part.kind in (Kind.STR, Kind.TEXT):
                pieces.append(f"str({local})")  # str of a StrEnum is its value
            else:
                pieces.append(f"{self._name(ns, _as_text)}({local})")
        lines.append("    return " + (" + ".join(pieces) or "''"))
        return self._compile(lines, ns, label)["render"]  # type: ignore[no-any-return]  # exec'd

    def key(self, specs: Sequence[FieldSpec], label: str) -> Callable[[Facts], tuple[Any, ...]]:
        """A function returning the values of `specs` as one tuple (index keys).

        Boolean fields keep only real booleans: `1` is not `true` for a test (`same`), so
        it must not find the rules indexed under `True` either (hash(1) == hash(True))."""
        ns: dict[str, Any] = {}
        parts = []
        hits: dict[tuple[int, str], str] = {}
        lines = ["def key(f):"]
        # A text field whose phrase and regex hits both go into the key: one `scan` reads
        # both (`FieldMatcher.scan`), before the tuple is built (the reads have no effect
        # but filling the per-decision cache, so their order does not matter).
        methods: dict[int, set[str]] = {}
        matchers: dict[int, FieldMatcher] = {}
        for spec in specs:
            derived = self.matchers.derived(spec.path) if spec.path not in INLINE else None
            if derived is not None:
                methods.setdefault(id(derived[0]), set()).add(derived[1])
                matchers[id(derived[0])] = derived[0]
        for mid, used in methods.items():
            if used == {"phrase_hits", "regex_hits"}:
                phrases, regexes = self._name(ns, None, "_h"), self._name(ns, None, "_h")
                hits[mid, "phrase_hits"], hits[mid, "regex_hits"] = phrases, regexes
                lines.append(f"    {phrases}, {regexes} = {self._name(ns, matchers[mid].scan)}(f)")
        for spec in specs:
            expr = self.value(spec, ns, hits)
            if spec.kind is Kind.BOOL and not spec.path.endswith("?"):  # `?`: always a bool
                local = self._name(ns, None, "_v")
                expr = f"({local} if ({local} := {expr}) is True or {local} is False else None)"
            parts.append(expr)
        values = ", ".join(parts)
        lines.append(f"    return ({values}{',' if len(specs) == 1 else ''})")
        return self._compile(lines, ns, label)["key"]  # type: ignore[no-any-return]  # exec'd

    @staticmethod
    def _compile(lines: list[str], ns: dict[str, Any], label: str) -> dict[str, Any]:
        lines = _hoisted(lines)
        code = compile("\n".join(lines), f"<rules: {label}>", "exec")
        ns.update(INLINE_NAMES)
        exec(code, ns)
        return ns
