"""One pass per text field: every phrase and regex a ruleset tests on a field, matched at once.

The compiled evaluator registers, per field path, the phrases of `contains` /
`contains_any` tests (and, for `message.text`, the intent keywords) and the patterns of
`matches` tests. Per decision and field, at most one `match` runs:

- ASCII text (the common case): one RE2 set holds every regex, and every phrase as
  `(?i)\\btok1\\W+tok2...\\b`. For ASCII, RE2's `\\w`, `\\b` and `(?i)` are exactly the word
  tokens of `rules.facts.words` (lower-cased `[a-z0-9_]+` runs), so a phrase hit means the
  phrase's tokens occur consecutively in the text, which is the reference semantics.
- Other text: regexes through an RE2 set of the regexes only; phrases on the NFKC +
  casefold word tokens, looked up by first token.

Sets are chunked and given a generous memory budget: RE2 sets have no slower fallback
when their DFA runs out of memory, so each one is kept far from that limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2

from rules.facts import NO_HITS, Hits, TextView
from rules.operators import Phrase

PHRASE_CHUNK = 128  # phrase patterns per RE2 set
REGEX_CHUNK = 32  # regex patterns per RE2 set
_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.never_capture = True
_SET_OPTIONS.max_mem = 64 << 20
EMPTY: frozenset[int] = frozenset()


_Chunk = tuple[Any, tuple[int, ...]]  # an RE2 set, and the tag of each of its patterns


def _chunks(phrases: list[tuple[str, int]], regexes: list[tuple[str, int]]) -> list[_Chunk]:
    """Pack (pattern, tag) pairs into RE2 sets: at most PHRASE_CHUNK patterns per set, of
    which at most REGEX_CHUNK regexes (user patterns can build much larger automata)."""
    out: list[_Chunk] = []
    ph, rx = list(phrases), list(regexes)
    while ph or rx:
        part = rx[:REGEX_CHUNK]
        rx = rx[REGEX_CHUNK:]
        room = PHRASE_CHUNK - len(part)
        part = ph[:room] + part
        ph = ph[room:]
        rset = re2.Set.SearchSet(_SET_OPTIONS)
        for pattern, _ in part:
            rset.Add(pattern)
        rset.Compile()
        out.append((rset, tuple(tag for _, tag in part)))
    return out


@dataclass
class FieldMatcher:
    path: str
    phrases: list[Phrase] = field(default_factory=list)
    regexes: list[str] = field(default_factory=list)
    _ascii: list[_Chunk] = field(default_factory=list)
    _regex_only: list[_Chunk] = field(default_factory=list)
    _by_first: dict[str, list[tuple[str, int, bool]]] = field(default_factory=dict)
    _fast: tuple[Any, int, tuple[int, ...]] | None = None  # a single set (the usual case)

    def add_phrase(self, phrase: Phrase) -> int:
        for i, known in enumerate(self.phrases):
            if known.tokens == phrase.tokens:
                return i
        self.phrases.append(phrase)
        return len(self.phrases) - 1

    def add_regex(self, pattern: str) -> int:
        if pattern in self.regexes:
            return self.regexes.index(pattern)
        self.regexes.append(pattern)
        return len(self.regexes) - 1

    def build(self) -> None:
        # Tags: phrase i -> i; regex j -> -(j + 1).
        ascii_phrases = [
            (r"(?i)\b" + r"\W+".join(p.tokens) + r"\b", i)
            for i, p in enumerate(self.phrases)
            if all(t.isascii() for t in p.tokens)
        ]
        regexes = [(pattern, -(j + 1)) for j, pattern in enumerate(self.regexes)]
        self._ascii = _chunks(ascii_phrases, regexes)
        self._regex_only = _chunks([], regexes)
        if len(self._ascii) == 1:  # set index i < n: phrase ids[i]; else regex i - n
            ids = tuple(i for _, i in ascii_phrases)
            self._fast = (self._ascii[0][0], len(ids), ids)
        for i, p in enumerate(self.phrases):
            entry = (p.joined, i, len(p.tokens) == 1)
            self._by_first.setdefault(p.tokens[0], []).append(entry)

    def match(self, text: str) -> Hits:
        fast = self._fast
        if fast is not None and text.isascii():
            rset, n, ids = fast
            found = rset.Match(text)
            if not found:
                return NO_HITS
            if max(found) < n:
                return Hits(frozenset(map(ids.__getitem__, found)), EMPTY)
            return Hits(
                frozenset([ids[i] for i in found if i < n]),
                frozenset([i - n for i in found if i >= n]),
            )
        phrases: list[int] = []
        regexes: list[int] = []
        ascii_text = text.isascii()
        for rset, tags in self._ascii if ascii_text else self._regex_only:
            found = rset.Match(text)
            if found:
                for i in found:
                    tag = tags[i]
                    if tag >= 0:
                        phrases.append(tag)
                    else:
                        regexes.append(-tag - 1)
        if not ascii_text:
            phrases = self._token_phrases(text)
        if not regexes:
            return Hits(frozenset(phrases), EMPTY) if phrases else NO_HITS
        return Hits(frozenset(phrases), frozenset(regexes))

    def _token_phrases(self, text: str) -> list[int]:
        view = TextView.of(text)
        found: list[int] = []
        by_first = self._by_first
        for tok in view.token_set.intersection(by_first):
            for joined, i, single in by_first[tok]:
                if single or joined in view.joined:
                    found.append(i)
        return found


class Matchers:
    """The field matchers of one compiled ruleset."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldMatcher] = {}

    def of(self, path: str) -> FieldMatcher:
        matcher = self.fields.get(path)
        if matcher is None:
            matcher = self.fields[path] = FieldMatcher(path)
        return matcher

    def build(self) -> None:
        for matcher in self.fields.values():
            matcher.build()
