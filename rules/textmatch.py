"""Text tests of the compiled evaluator: phrases and regexes, each kind in RE2 sets.

The compiled evaluator registers, per text field, the phrases of `contains` /
`contains_any` tests (and, for `message.text`, the intent keywords) and the patterns of
`matches` tests. Per decision and field, each kind of matching runs at most once, and only
when a rule being tried needs it (`Facts.phrase_hits` / `Facts.regex_hits` keep the ids):

- Phrases: the text is normalised to its word tokens separated by spaces
  (`rules.facts.spaced_bytes`: NFKC + casefold, `\\w+` runs, a byte table for ASCII), and
  one RE2 set search finds every phrase as `(?:^| )a +b(?: |$)`: its tokens, whole and
  consecutive, which is exactly `rules.operators.has_phrase`, the reference. The tokens
  are literal word characters, so the normalised text is all the set ever sees.
- Regexes: one RE2 set search over the field's patterns (linear time), skipped when a
  prefilter (`rules.prefilter`) proves that none of them can match.

Both run in C over the whole text at once: no token objects, no per-token hashing. Sets
are chunked and given a generous memory budget: RE2 sets have no slower fallback when
their DFA runs out of memory, so each one is kept far from that limit (a phrase set's
automaton grows with the phrases' characters, like a trie).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any

import re2

from rules.ast import Cond, Test
from rules.facts import ASCII_TABLE, NONE, NOTHING, Facts, Found, spaced_bytes
from rules.fields import FieldSpec, Kind
from rules.operators import Phrase
from rules.prefilter import required_literal

REGEX_CHUNK = 32  # patterns per RE2 set (user patterns can build large automata)
PHRASE_CHUNK = 512  # phrases per RE2 set (literal words: an automaton the size of a trie)
FOUND_CACHE_MAX = 4096  # outcomes kept per field and kind (cleared when full)
_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.never_capture = True
_SET_OPTIONS.max_mem = 64 << 20

SetSearch = Callable[[bytes], Any]  # bytes -> ids found (a list, maybe empty, or None)


def _sets(patterns: list[str], chunk: int) -> list[tuple[SetSearch, int]]:
    """The search of RE2 sets of at most `chunk` patterns each, with the id of their first
    pattern."""
    out: list[tuple[SetSearch, int]] = []
    for start in range(0, len(patterns), chunk):
        rset = re2.Set.SearchSet(_SET_OPTIONS)
        for pattern in patterns[start : start + chunk]:
            rset.Add(pattern)
        rset.Compile()
        # The compiled set itself when the wrapper exposes it: the wrapper's Match only
        # adds a Python call (it encodes str; the text is already bytes here).
        out.append((getattr(rset, "_set", rset).Match, start))
    return out


def phrase_pattern(tokens: tuple[str, ...]) -> str:
    """The tokens, whole and consecutive, in a text of tokens separated by spaces."""
    return "(?:^| )" + " +".join(map(re.escape, tokens)) + "(?: |$)"


def _search(sets: list[tuple[SetSearch, int]], data: bytes) -> list[int]:
    out: list[int] = []
    for match, start in sets:
        hit = match(data)
        if hit:
            out.extend(start + i for i in hit)
    return out


class FieldMatcher:
    """Every phrase and regex a ruleset tests on one text field. Hashed by identity: it is
    the key of the per-decision caches in `Facts`."""

    def __init__(self, path: str, text_of: Callable[[Facts], Any]) -> None:
        self.path = path
        self.text_of = text_of
        self.phrase_list: list[Phrase] = []
        self.regex_list: list[str] = []
        self.intent_of: dict[int, list[str]] = {}  # phrase id -> intents it signals
        # Key of this field's regex hits in the per-decision cache (the phrase hits are
        # under the matcher itself; `Facts.regex_hits`).
        self.regex_cache_key = object()
        self._phrase_sets: list[tuple[SetSearch, int]] = []
        self._regex_sets: list[tuple[SetSearch, int]] = []
        # One `Found` per distinct outcome, by the ids found.
        self._phrases_found: dict[frozenset[int], Found] = {}
        self._regexes_found: dict[frozenset[int], Found] = {}
        # Lower-cased literal each regex needs in ASCII text; None: no prefilter possible.
        self._needed: tuple[str, ...] | None = None
        # Ids the candidate index looks rules up by, and their index fields (`index_test`).
        self.indexed_phrases: frozenset[int] = NONE
        self.indexed_regexes: frozenset[int] = NONE
        self.phrase_field = FieldSpec(f"{path}#phrases", Kind.SET, self._indexed_phrase_hits,
                                      f"indexed phrases found in {path}", indexable=True)
        self.regex_field = FieldSpec(f"{path}#regexes", Kind.SET, self._indexed_regex_hits,
                                     f"indexed regexes found in {path}", indexable=True)

    def _indexed_phrase_hits(self, f: Facts) -> frozenset[int]:
        return f.phrase_hits(self).indexed

    def _indexed_regex_hits(self, f: Facts) -> frozenset[int]:
        return f.regex_hits(self).indexed

    def add_phrase(self, phrase: Phrase) -> int:
        for i, known in enumerate(self.phrase_list):
            if known.tokens == phrase.tokens:
                return i
        self.phrase_list.append(phrase)
        return len(self.phrase_list) - 1

    def add_regex(self, pattern: str) -> int:
        if pattern in self.regex_list:
            return self.regex_list.index(pattern)
        self.regex_list.append(pattern)
        return len(self.regex_list) - 1

    def build(self) -> None:
        """After every phrase and regex is registered."""
        patterns = [phrase_pattern(p.tokens) for p in self.phrase_list]
        self._phrase_sets = _sets(patterns, PHRASE_CHUNK)
        self._regex_sets = _sets(self.regex_list, REGEX_CHUNK)
        needed = [required_literal(p) for p in self.regex_list]
        self._needed = None if None in needed else tuple(n for n in needed if n is not None)

    def phrases(self, text: str) -> Found:
        """Ids of the phrases whose tokens occur consecutively in the text's tokens."""
        sets = self._phrase_sets
        if not sets:
            return NOTHING
        # `rules.facts.spaced_bytes`, its ASCII path inlined
        data = (text.encode("ascii").translate(ASCII_TABLE) if text.isascii()
                else spaced_bytes(text))  # fmt: skip
        if len(sets) == 1:
            hit = sets[0][0](data)
            if not hit:
                return NOTHING
            ids = frozenset(hit)
        else:
            ids = frozenset(_search(sets, data))
        found = self._phrases_found.get(ids)
        if found is None:
            found = self._keep(self._phrases_found, ids, self.indexed_phrases, self.intent_of)
        return found

    def regexes(self, text: str) -> Found:
        """Ids of the regexes found in the text."""
        sets = self._regex_sets
        if not sets:
            return NOTHING
        needed = self._needed
        if needed is not None and text.isascii():
            low = text.lower()
            for literal in needed:  # a plain loop: any() over a generator costs more here
                if literal in low:
                    break
            else:
                return NOTHING
        data = text.encode()
        if len(sets) == 1:
            hit = sets[0][0](data)
            if not hit:
                return NOTHING
            ids = frozenset(hit)
        else:
            ids = frozenset(_search(sets, data))
        found = self._regexes_found.get(ids)
        if found is None:
            found = self._keep(self._regexes_found, ids, self.indexed_regexes, {})
        return found

    @staticmethod
    def _keep(
        kept: dict[frozenset[int], Found],
        ids: frozenset[int],
        indexed: frozenset[int],
        intent_of: dict[int, list[str]],
    ) -> Found:
        if len(kept) >= FOUND_CACHE_MAX:
            kept.clear()
        found = kept[ids] = Found.of(ids, indexed, intent_of)
        return found


class Matchers:
    """The field matchers of one compiled ruleset."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldMatcher] = {}

    def of(self, path: str, text_of: Callable[[Facts], Any]) -> FieldMatcher:
        matcher = self.fields.get(path)
        if matcher is None:
            matcher = self.fields[path] = FieldMatcher(path, text_of)
        return matcher

    def derived(self, path: str) -> tuple[FieldMatcher, str, str] | None:
        """For a field derived from text hits: its matcher, the `Facts` method giving them
        and the attribute of `Found` holding the value (inlined by `rules.codegen`)."""
        if path == "message.intent":
            return self.of("message.text", Facts.text), "phrase_hits", "intents"
        field, _, kind = path.rpartition("#")
        matcher = self.fields.get(field)
        if matcher is None or kind not in ("phrases", "regexes"):
            return None
        return matcher, "phrase_hits" if kind == "phrases" else "regex_hits", "indexed"

    def index_test(self, cond: Cond) -> tuple[FieldSpec, frozenset[Hashable]] | None:
        """A phrase or regex test as an index test (`rules.index.plan`): on the set of the
        ids of the indexed phrases (regexes) found in the field, `<path>#phrases`."""
        if not isinstance(cond, Test) or cond.spec.kind is Kind.SET:
            return None
        m = self.of(cond.spec.path, cond.spec.getter)
        if cond.op in ("contains", "contains_any"):
            members = (cond.lit,) if cond.op == "contains" else cond.lit
            ids = frozenset(m.add_phrase(p) for p in members)
            m.indexed_phrases |= ids
            return m.phrase_field, ids
        if cond.op == "matches":
            ids = frozenset((m.add_regex(cond.lit.pattern),))
            m.indexed_regexes |= ids
            return m.regex_field, ids
        return None

    def build(self) -> None:
        for matcher in self.fields.values():
            matcher.build()
