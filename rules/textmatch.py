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

- Both at once (`FieldMatcher.scan`, for index keys that read both kinds): on ASCII text,
  one set holds the ASCII phrases rewritten over the raw text (`ascii_phrase_pattern`:
  in ASCII text the words are the [0-9A-Za-z_] runs, lower-cased) and the regexes as
  they are, so one RE2 call replaces two and no prefilter is needed; other text takes
  the two searches above.

All run in C over the whole text at once: no token objects, no per-token hashing. Sets
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
BOTH_MAX_REGEXES = 8  # regexes that may share one set with the phrases (`scan`, ASCII text)
_NON_WORD = "[^0-9A-Za-z_]"  # in ASCII text: a character `\\w` does not match
_WORD_LITERAL = re.compile(r"[a-z0-9_]+")  # a prefilter literal of word characters only
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


def ascii_phrase_pattern(tokens: tuple[str, ...]) -> str:
    """`phrase_pattern` over the raw text instead of its normalised words, valid for ASCII
    text and ASCII tokens only: there, the words are the runs of [0-9A-Za-z_] lower-cased
    (`rules.facts.words`), and RE2's case folding of ASCII letters is ASCII's."""
    return (f"(?:^|{_NON_WORD})"
            + f"{_NON_WORD}+".join(f"(?i:{re.escape(t)})" for t in tokens)
            + f"(?:{_NON_WORD}|$)")  # fmt: skip


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
        # Id of each registered phrase (by its tokens) and regex: registration stays linear
        # in the number of distinct phrases of a large ruleset.
        self._phrase_ids: dict[tuple[str, ...], int] = {}
        self._regex_ids: dict[str, int] = {}
        # Key of this field's regex hits in the per-decision cache (the phrase hits are
        # under the matcher itself; `Facts.regex_hits`).
        self.regex_cache_key = object()
        self._phrase_sets: list[tuple[SetSearch, int]] = []
        self._regex_sets: list[tuple[SetSearch, int]] = []
        # The search of the only set, when there is exactly one (the usual case).
        self._phrase_one: SetSearch | None = None
        self._regex_one: SetSearch | None = None
        # One `Found` per distinct outcome, by the ids found; and the same objects by the
        # ids as RE2 lists them (a tuple: cheaper than a set; the order varies by text).
        self._phrases_found: dict[frozenset[int], Found] = {}
        self._regexes_found: dict[frozenset[int], Found] = {}
        self._phrases_by_hit: dict[tuple[int, ...], Found] = {}
        self._regexes_by_hit: dict[tuple[int, ...], Found] = {}
        # Lower-cased literal each regex needs in ASCII text; None: no prefilter possible.
        self._needed: tuple[str, ...] | None = None
        # The same literals as bytes when every one is made of word characters ([a-z0-9_]):
        # then, in ASCII text, a literal occurs in the lower-cased text exactly when it
        # occurs in the normalised bytes of the phrase search (both lower-case letters and
        # keep word characters; `spaced_bytes` turns only non-word characters into spaces).
        self._needed_words: tuple[bytes, ...] | None = None
        # `scan` on ASCII text: one set of the ASCII phrases (as `ascii_phrase_pattern`)
        # and the regexes, searched over the raw text; per set id, the phrase id (or -1)
        # and the regex id (or -1); both outcomes kept by the ids as RE2 lists them.
        self._both: SetSearch | None = None
        self._both_phrase: tuple[int, ...] = ()
        self._both_regex: tuple[int, ...] = ()
        self._both_by_hit: dict[tuple[int, ...], tuple[Found, Found]] = {}
        # `message.text` is built inline by `scan` (`Facts.text`, without its call).
        self._is_message_text = path == "message.text"
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
        """The id of the phrase with these tokens (registered now if new)."""
        known = self._phrase_ids.get(phrase.tokens)
        if known is not None:
            return known
        pid = self._phrase_ids[phrase.tokens] = len(self.phrase_list)
        self.phrase_list.append(phrase)
        return pid

    def add_regex(self, pattern: str) -> int:
        known = self._regex_ids.get(pattern)
        if known is not None:
            return known
        rid = self._regex_ids[pattern] = len(self.regex_list)
        self.regex_list.append(pattern)
        return rid

    def build(self) -> None:
        """After every phrase and regex is registered."""
        patterns = [phrase_pattern(p.tokens) for p in self.phrase_list]
        self._phrase_sets = _sets(patterns, PHRASE_CHUNK)
        self._regex_sets = _sets(self.regex_list, REGEX_CHUNK)
        self._phrase_one = self._phrase_sets[0][0] if len(self._phrase_sets) == 1 else None
        self._regex_one = self._regex_sets[0][0] if len(self._regex_sets) == 1 else None
        needed = [required_literal(p) for p in self.regex_list]
        self._needed = None if None in needed else tuple(n for n in needed if n is not None)
        if self._needed is not None and all(_WORD_LITERAL.fullmatch(n) for n in self._needed):
            self._needed_words = tuple(n.encode("ascii") for n in self._needed)
        if self._phrase_one is not None and self._regex_one is not None and (
            len(self.regex_list) <= BOTH_MAX_REGEXES
        ):
            # A phrase with a non-ASCII token never occurs in ASCII text: left out.
            ascii_ids = [i for i, p in enumerate(self.phrase_list)
                         if all(t.isascii() for t in p.tokens)]  # fmt: skip
            patterns = [ascii_phrase_pattern(self.phrase_list[i].tokens) for i in ascii_ids]
            patterns += self.regex_list
            self._both = _sets(patterns, len(patterns))[0][0]
            self._both_phrase = (*ascii_ids, *(-1 for _ in self.regex_list))
            self._both_regex = (*(-1 for _ in ascii_ids), *range(len(self.regex_list)))

    def phrases(self, text: str) -> Found:
        """Ids of the phrases whose tokens occur consecutively in the text's tokens."""
        if not self._phrase_sets:
            return NOTHING
        # `rules.facts.spaced_bytes`, its ASCII path inlined
        data = (text.encode("ascii").translate(ASCII_TABLE) if text.isascii()
                else spaced_bytes(text))  # fmt: skip
        return self._phrases_in(data)

    def _phrases_in(self, spaced: bytes) -> Found:
        """The phrases found in a text normalised by `spaced_bytes` (some set exists)."""
        one = self._phrase_one
        hit = one(spaced) if one is not None else _search(self._phrase_sets, spaced)
        if not hit:
            return NOTHING
        key = tuple(hit)
        found = self._phrases_by_hit.get(key)
        if found is None:
            found = self._keep(self._phrases_by_hit, self._phrases_found, key,
                               self.indexed_phrases, self.intent_of)  # fmt: skip
        return found

    def regexes(self, text: str) -> Found:
        """Ids of the regexes found in the text."""
        if not self._regex_sets:
            return NOTHING
        needed = self._needed
        if needed is not None and text.isascii():
            low = text.lower()
            for literal in needed:  # a plain loop: any() over a generator costs more here
                if literal in low:
                    break
            else:
                return NOTHING
        return self._regexes_in(text.encode())

    def _regexes_in(self, data: bytes) -> Found:
        """The regexes found in UTF-8 text (some set exists)."""
        one = self._regex_one
        hit = one(data) if one is not None else _search(self._regex_sets, data)
        if not hit:
            return NOTHING
        key = tuple(hit)
        found = self._regexes_by_hit.get(key)
        if found is None:
            found = self._keep(self._regexes_by_hit, self._regexes_found, key,
                               self.indexed_regexes, {})  # fmt: skip
        return found

    def scan(self, f: Facts) -> tuple[Found, Found]:
        """`f.phrase_hits(self)` and `f.regex_hits(self)` at once (index keys reading both):
        one read of the text, one encoding, and the prefilter reads the normalised bytes
        of the phrase search instead of lower-casing the text. Same results, same cache."""
        hits = f.hits
        if hits:  # some matching already ran (not in an index key): the slow way
            return f.phrase_hits(self), f.regex_hits(self)
        if self._is_message_text:  # `Facts.text`, inlined
            text = f.text_cache
            if text is None:
                fields = f.msg_fields
                subject = fields["subject"]
                text = f.text_cache = f"{subject}\n{fields['body']}" if subject else fields["body"]
        else:
            text = self.text_of(f)
        if not isinstance(text, str):
            hits[self] = hits[self.regex_cache_key] = NOTHING
            return NOTHING, NOTHING
        both = self._both
        if both is not None and text.isascii():  # one search over the raw text
            hit = both(text.encode("ascii"))
            if hit:
                key = tuple(hit)
                pair = self._both_by_hit.get(key)
                if pair is None:
                    pair = self._keep_both(key)
                phrases, regexes = pair
            else:
                phrases = regexes = NOTHING
            hits[self] = phrases
            hits[self.regex_cache_key] = regexes
            return phrases, regexes
        data: bytes | None
        if text.isascii():
            data = ascii = text.encode("ascii")  # also the UTF-8 of the text
            spaced = ascii.translate(ASCII_TABLE)
        else:
            data = None
            spaced = spaced_bytes(text)
        phrases = NOTHING
        if self._phrase_sets:
            one = self._phrase_one
            if one is None:
                phrases = self._phrases_in(spaced)
            else:  # `_phrases_in`, inlined
                hit = one(spaced)
                if hit:
                    key = tuple(hit)
                    found = self._phrases_by_hit.get(key)
                    phrases = found if found is not None else self._keep(
                        self._phrases_by_hit, self._phrases_found, key, self.indexed_phrases,
                        self.intent_of)  # fmt: skip
        regexes = NOTHING
        if self._regex_sets:
            if data is None:
                regexes = self._regexes_in(text.encode())
            else:
                words = self._needed_words
                if words is not None:
                    for literal in words:  # not `in`: bytes.__contains__ first tries
                        if spaced.find(literal) >= 0:  # an int, and raises, and clears it
                            regexes = self._regexes_in(data)
                            break
                elif self._needed is None:
                    regexes = self._regexes_in(data)
                else:
                    low = text.lower()
                    for needed in self._needed:
                        if needed in low:
                            regexes = self._regexes_in(data)
                            break
        hits[self] = phrases
        hits[self.regex_cache_key] = regexes
        return phrases, regexes

    def _keep_both(self, hit: tuple[int, ...]) -> tuple[Found, Found]:
        """The phrase and regex outcomes of ids found by the set of both (`scan`)."""
        phrases = tuple(p for p in (self._both_phrase[i] for i in hit) if p >= 0)
        regexes = tuple(r for r in (self._both_regex[i] for i in hit) if r >= 0)
        pair = (
            self._keep({}, self._phrases_found, phrases, self.indexed_phrases, self.intent_of)
            if phrases
            else NOTHING,
            self._keep({}, self._regexes_found, regexes, self.indexed_regexes, {})
            if regexes
            else NOTHING,
        )
        if len(self._both_by_hit) >= FOUND_CACHE_MAX:
            self._both_by_hit.clear()
        self._both_by_hit[hit] = pair
        return pair

    @staticmethod
    def _keep(
        by_hit: dict[tuple[int, ...], Found],
        kept: dict[frozenset[int], Found],
        hit: tuple[int, ...],
        indexed: frozenset[int],
        intent_of: dict[int, list[str]],
    ) -> Found:
        """The one `Found` of the ids in `hit`, now also kept under `hit` itself."""
        ids = frozenset(hit)
        found = kept.get(ids)
        if found is None:
            if len(kept) >= FOUND_CACHE_MAX:
                kept.clear()
            found = kept[ids] = Found.of(ids, indexed, intent_of)
        if len(by_hit) >= FOUND_CACHE_MAX:
            by_hit.clear()
        by_hit[hit] = found
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
