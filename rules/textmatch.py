"""Text tests of the compiled evaluator: phrases on word tokens, regexes in RE2 sets.

The compiled evaluator registers, per text field, the phrases of `contains` /
`contains_any` tests (and, for `message.text`, the intent keywords) and the patterns of
`matches` tests. Per decision and field, each kind of matching runs at most once, and only
when a rule being tried needs it (`Facts.phrase_hits` / `Facts.regex_hits` keep the ids):

- Phrases: the text's word tokens (`rules.facts.words`: NFKC + casefold, `\\w+` runs, with
  a byte-level fast path for ASCII) meet the set of every token of the phrases. That
  intersection alone settles the one-token phrases; a longer phrase whose tokens are all
  there is then looked up as " a b " in the tokens joined by single spaces, which holds
  exactly when its tokens occur consecutively (`rules.operators.has_phrase`, the
  reference). No regex is involved, so there is no ASCII / Unicode split to keep equal.
- Regexes: one RE2 set search over the field's patterns (linear time), skipped when a
  prefilter (`rules.prefilter`) proves that none of them can match.

Sets are chunked and given a generous memory budget: RE2 sets have no slower fallback
when their DFA runs out of memory, so each one is kept far from that limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

from rules.facts import NONE, Facts, word_bytes
from rules.operators import Phrase
from rules.prefilter import required_literal

REGEX_CHUNK = 32  # patterns per RE2 set (user patterns can build large automata)
PLAN_CACHE_MAX = 4096  # phrase plans kept per set of phrase tokens found (cleared when full)
_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.never_capture = True
_SET_OPTIONS.max_mem = 64 << 20


def _regex_sets(patterns: list[str]) -> list[tuple[Any, int]]:
    """RE2 sets of at most REGEX_CHUNK patterns each, with the id of their first pattern."""
    out: list[tuple[Any, int]] = []
    for start in range(0, len(patterns), REGEX_CHUNK):
        rset = re2.Set.SearchSet(_SET_OPTIONS)
        for pattern in patterns[start : start + REGEX_CHUNK]:
            rset.Add(pattern)
        rset.Compile()
        out.append((rset, start))
    return out


class _Plan:
    """Phrase matching for one set of phrase tokens found in a text (a subset of the
    ruleset's vocabulary, not of the message): the one-token phrases found, and the longer
    phrases whose tokens are all there, still to look for in order."""

    __slots__ = ("_ids", "_outcomes", "found", "multi")

    def __init__(self, found: frozenset[int], multi: list[tuple[int, bytes]]) -> None:
        self.found = found
        self.multi = tuple((1 << k, joined) for k, (_, joined) in enumerate(multi))
        self._ids = tuple(i for i, _ in multi)
        self._outcomes: dict[int, frozenset[int]] = {0: found}

    def outcome(self, mask: int) -> frozenset[int]:
        """The phrases found when the longer phrases in `mask` (bits, by position) are."""
        hit = self._outcomes.get(mask)
        if hit is None:
            more = [i for k, i in enumerate(self._ids) if mask >> k & 1]
            hit = self._outcomes[mask] = self.found.union(more)
        return hit


class FieldMatcher:
    """Every phrase and regex a ruleset tests on one text field. Hashed by identity: it is
    the key of the per-decision caches in `Facts`."""

    def __init__(self, path: str, text_of: Callable[[Facts], Any]) -> None:
        self.path = path
        self.text_of = text_of
        self.phrase_list: list[Phrase] = []
        self.regex_list: list[str] = []
        self._vocab: frozenset[bytes] = frozenset()  # every token of every phrase
        self._single: dict[bytes, int] = {}  # one-token phrases
        self._multi: list[tuple[int, frozenset[bytes], bytes]] = []  # id, tokens, b" a b "
        self._plans: dict[frozenset[bytes], _Plan] = {}
        self._sets: list[tuple[Any, int]] = []
        # Lower-cased literal each regex needs in ASCII text; None: no prefilter possible.
        self._needed: tuple[str, ...] | None = None

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
        vocab: set[bytes] = set()
        for i, p in enumerate(self.phrase_list):
            toks = [t.encode() for t in p.tokens]
            vocab.update(toks)
            if len(toks) == 1:
                self._single[toks[0]] = i
            else:
                self._multi.append((i, frozenset(toks), p.joined.encode()))
        self._vocab = frozenset(vocab)
        self._sets = _regex_sets(self.regex_list)
        needed = [required_literal(p) for p in self.regex_list]
        self._needed = None if None in needed else tuple(n for n in needed if n is not None)

    def phrases(self, text: str) -> frozenset[int]:
        """Ids of the phrases whose tokens occur consecutively in the text's tokens."""
        toks = word_bytes(text)
        present = self._vocab.intersection(toks)
        if not present:
            return NONE
        plan = self._plans.get(present)
        if plan is None:
            plan = self._plan(present)
        if not plan.multi:
            return plan.found
        find = (b" " + b" ".join(toks) + b" ").find  # `in` on bytes costs a caught TypeError
        mask = 0
        for bit, tail in plan.multi:
            if find(tail) >= 0:
                mask |= bit
        return plan.outcome(mask)

    def _plan(self, present: frozenset[bytes]) -> _Plan:
        single = self._single
        found = frozenset(single[tok] for tok in present if tok in single)
        multi = [(i, joined) for i, toks, joined in self._multi if toks <= present]
        plan = _Plan(found, multi)
        if len(self._plans) >= PLAN_CACHE_MAX:
            self._plans.clear()
        self._plans[present] = plan
        return plan

    def regexes(self, text: str) -> frozenset[int]:
        """Ids of the regexes found in the text."""
        sets = self._sets
        if not sets:
            return NONE
        needed = self._needed
        if needed is not None and text.isascii():
            low = text.lower()
            for literal in needed:  # a plain loop: any() over a generator costs more here
                if literal in low:
                    break
            else:
                return NONE
        data = text.encode()
        if len(sets) == 1:
            hit = sets[0][0].Match(data)
            return frozenset(hit) if hit else NONE
        out: list[int] = []
        for rset, start in sets:
            hit = rset.Match(data)
            if hit:
                out.extend(start + i for i in hit)
        return frozenset(out) if out else NONE


class Matchers:
    """The field matchers of one compiled ruleset."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldMatcher] = {}

    def of(self, path: str, text_of: Callable[[Facts], Any]) -> FieldMatcher:
        matcher = self.fields.get(path)
        if matcher is None:
            matcher = self.fields[path] = FieldMatcher(path, text_of)
        return matcher

    def build(self) -> None:
        for matcher in self.fields.values():
            matcher.build()
