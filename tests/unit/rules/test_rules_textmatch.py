"""The compiled evaluator's text matching: phrases in RE2 sets over the normalised words,
regexes in RE2 sets with a literal prefilter. Each must agree with the reference
(`has_phrase`, RE2 search)."""

from __future__ import annotations

import re
import unicodedata
from types import SimpleNamespace

import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.facts import Facts, word_bytes, words
from rules.operators import Phrase, has_phrase
from rules.prefilter import required_literal
from rules.textmatch import PHRASE_CHUNK, REGEX_CHUNK, FieldMatcher, phrase_pattern
from tests.unit.rules.rules_support import make_input


def _matcher(phrases: list[str], regexes: tuple[str, ...] = ()) -> FieldMatcher:
    m = FieldMatcher("message.body", lambda f: f.msg.body)
    for p in phrases:
        toks = tuple(words(p))
        m.add_phrase(Phrase(p, toks, " " + " ".join(toks) + " "))
    for r in regexes:
        m.add_regex(r)
    m.build()
    return m


def _found(m: FieldMatcher, text: str) -> set[str]:
    return {m.phrase_list[i].text for i in m.phrases(text)}


PHRASES = ["refund", "never arrived", "not received", "pas reçu", "straße", "don't",
           "a b a", "o-123"]  # fmt: skip


def test_ascii_and_unicode_text_find_the_same_phrases() -> None:
    m = _matcher(PHRASES)
    assert _found(m, "REFUND!! it never   arrived.") == {"refund", "never arrived"}
    assert _found(m, "Refund — it NEVER arrived…") == {"refund", "never arrived"}  # non-ASCII
    assert _found(m, "PAS REÇU, Strasse 5") == {"pas reçu", "straße"}  # casefold: ß -> ss
    # NFKC: a ligature, full-width letters
    assert _found(m, "\ufb01le: \uff52\uff45\uff46\uff55\uff4e\uff44") == {"refund"}
    assert _found(m, "refunds; arrived never") == set()  # whole words, in order


def test_multi_token_phrases_need_consecutive_tokens() -> None:
    m = _matcher(PHRASES)
    assert _found(m, "never, ever arrived") == set()
    assert _found(m, "never-arrived / not_received") == {"never arrived"}  # _ is a word char
    assert _found(m, "a b b a") == set()
    assert _found(m, "x a b a y") == {"a b a"}
    assert _found(m, "a b a b a") == {"a b a"}


def test_punctuation_between_tokens_does_not_matter() -> None:
    m = _matcher(PHRASES)
    assert _found(m, "never...arrived") == {"never arrived"}
    assert _found(m, "never\n\tarrived") == {"never arrived"}
    assert _found(m, "order O-123.") == {"o-123"}
    assert _found(m, "don\u2019t") == {"don't"}  # any punctuation: tokens "don", "t"
    assert _found(m, "don't, DON'T") == {"don't"}


def test_phrases_run_in_chunked_sets_and_keep_their_ids() -> None:
    many = [f"w{i} x" if i % 2 else f"w{i}" for i in range(PHRASE_CHUNK + 40)]
    m = _matcher(many)
    far = PHRASE_CHUNK + 7
    assert _found(m, f"W3  X, w{far} x w{far - 1} w2") == {"w3 x", f"w{far} x", f"w{far - 1}",
                                                          "w2"}  # fmt: skip
    assert _found(m, "w3, y x") == set()
    assert set(m.phrases(f"w{far}...X")) == {far}


def test_a_phrase_or_regex_registered_twice_keeps_its_first_id() -> None:
    m = FieldMatcher("message.body", lambda f: f.msg.body)
    ids = [m.add_phrase(Phrase(p, tuple(words(p)), "")) for p in
           ["Refund", "never arrived", "REFUND!", "Never  Arrived", "refunds"]]  # fmt: skip
    assert ids == [0, 1, 0, 1, 2]
    assert [p.text for p in m.phrase_list] == ["Refund", "never arrived", "refunds"]
    assert [m.add_regex(r) for r in ["a+", "b", "a+", "(?i)a+"]] == [0, 1, 0, 2]
    assert m.regex_list == ["a+", "b", "(?i)a+"]


def test_phrase_patterns_are_whole_consecutive_tokens() -> None:
    assert phrase_pattern(("never", "arrived")) == "(?:^| )never +arrived(?: |$)"
    m = _matcher(["a b", "b", "ab"])
    for text, found in [("a b", {"a b", "b"}), ("ab b", {"ab", "b"}), ("a  bb", set()),
                        ("xa b", {"b"}), ("a b_", set()), ("", set()), (" ", set())]:  # fmt: skip
        assert _found(m, text) == found, text


def test_word_bytes_are_the_utf8_of_the_words() -> None:
    for text in ["Hello, World_1!", "Grüße aus Köln", "\ufb01 \uff4c\uff4f\uff53\uff54", "", "  "]:
        assert word_bytes(text) == [w.encode() for w in words(text)]


def test_regexes_run_in_sets_and_keep_their_ids() -> None:
    patterns = tuple(f"(?i)\\bword{i}\\b" for i in range(REGEX_CHUNK + 5))
    m = _matcher(["x"], patterns)
    assert set(m.regexes("WORD3 and word35, word99")) == {3, 35}
    assert set(m.regexes("nothing here")) == set()


def test_prefilter_skips_only_texts_that_cannot_match() -> None:
    m = _matcher(["x"], (r"(?i)\border\s*#?\s*o-?\d{4,}",))
    assert set(m.regexes("ORDER #o-12345")) == {0}
    assert set(m.regexes("no such thing here")) == set()
    assert set(m.regexes("Ordér o-12345")) == set()  # non-ASCII text: RE2 decides


def test_required_literals() -> None:
    cases = {
        r"(?i)\border\s*#?\s*o-?\d{4,}": "order",
        "^hello": "hello",
        "lost$": "lost",
        r"(?i)\bstra(ss|ß)e\b": "stra",
        r"ab+c": "ab",
        r"colou?r": "colo",
        r"x{0}abc{2,}d": "abc",
        r"a\.b": "a.b",
        r"Ab[cd]Ef": "ab",
        "a*": None,
        r"\d{3}": None,
        "refund|money": None,  # alternation at the top level
        r"\x41bc": None,  # hex escapes are not read
        r"[[:alpha:]]x": None,  # POSIX classes are not read
        r"\Qa.b\E": None,
        r"a{,3}": None,  # not a repetition in every dialect: not read
        "\u017f": None,  # the long s: non-ASCII literals can match ASCII text under (?i)
        "(?i)k": "k",
        "a(?i)*b": None,  # the * applies to a
    }
    for pattern, literal in cases.items():
        assert required_literal(pattern) == literal, pattern


PIECES = ["a", "b", "A", "ab", "Ba", ".", r"\.", r"\b", r"\B", r"\A", r"\z", r"\d", r"\w",
          r"\s", r"\n", r"\-", "*", "+", "?", "*?", "+?", "{2}", "{0,1}", "{1,}", "(?i)", "(?s)",
          "(a|b)", "((a)b)", "(?P<n>ab)", "(?i:ab)", "[ab]", "[^a]", "[]a]", "[^]a]", "[a-b]",
          "^", "$", "|", "x", "-", " ", "}", "]"]  # fmt: skip
QUIET = re2.Options()
QUIET.log_errors = False
TEXT = st.text(alphabet=st.sampled_from(list("abxAB .-\n12]}")), max_size=20)


@settings(max_examples=1500, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=7), text=TEXT)
def test_a_regex_match_contains_its_required_literal(pieces: list[str], text: str) -> None:
    pattern = "".join(pieces)
    try:
        compiled = re2.compile(pattern, QUIET)
    except re2.error:
        return
    literal = required_literal(pattern)
    if literal is not None and compiled.search(text) is not None:
        assert literal in text.lower(), (pattern, text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30), phrases=st.lists(st.text(max_size=12), min_size=1, max_size=5))
def test_token_phrases_equal_the_reference_on_any_text(text: str, phrases: list[str]) -> None:
    kept = [p for p in phrases if words(p)]
    if not kept:
        return
    m = _matcher(kept)
    tokens = tuple(words(text))
    expected = {i for i, p in enumerate(m.phrase_list) if has_phrase(tokens, p.tokens)}
    assert set(m.phrases(text)) == expected


@settings(max_examples=400, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=0x17F), max_size=40))
def test_latin1_and_unicode_tokens_equal_the_regex_definition(text: str) -> None:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    expected = re.findall(r"\w+", folded)
    assert words(text) == expected
    assert word_bytes(text) == [w.encode() for w in expected]


SCAN_PHRASES = ["refund", "never arrived", "order", "pas reçu", "straße", "don't", "a b a",
                "o-123", "k", "s s", "x_1", "ab"]  # fmt: skip
SCAN_REGEXES = [r"(?i)\border\s*#?\s*o-?\d{4,}", "^ab", "ab$", r"\bk\b", "(?i)s", "é", "[^a-z]",
                r"\Ax", "(?m)^b", r"\d+_", "o-1", "(?i)k d"]  # fmt: skip
_SCAN_ASCII = list("abkoxsKSOR dre_-#.'\n12")
SCAN_TEXT = st.text(alphabet=st.sampled_from(_SCAN_ASCII), max_size=30) | st.text(
    alphabet=st.sampled_from([*_SCAN_ASCII, "é", "\u017f", "\u212a", "ß", "ç"]), max_size=30)


@settings(max_examples=600, deadline=None)
@given(text=SCAN_TEXT, phrases=st.lists(st.sampled_from(SCAN_PHRASES), min_size=1, max_size=6),
       regexes=st.lists(st.sampled_from(SCAN_REGEXES), min_size=1, max_size=4, unique=True),
       shared=st.booleans())  # fmt: skip
def test_scan_finds_what_each_kind_finds_on_any_text(
    text: str, phrases: list[str], regexes: list[str], shared: bool
) -> None:
    """`scan` (one set over the raw text when it is ASCII) equals the two searches, and
    both equal the references (`has_phrase` on the words, RE2 search per pattern).
    Without the shared set (too many regexes) it prefilters on the normalised bytes."""
    m = _matcher(phrases, tuple(regexes))
    assert m._both is not None  # the shared set is in use
    if not shared:
        m._both = None
    f = Facts(make_input(text), SimpleNamespace())
    found_phrases, found_regexes = m.scan(f)
    assert (set(found_phrases), set(found_regexes)) == (set(m.phrases(text)), set(m.regexes(text)))
    tokens = tuple(words(text))
    assert set(found_phrases) == {i for i, p in enumerate(m.phrase_list)
                                  if has_phrase(tokens, p.tokens)}  # fmt: skip
    assert set(found_regexes) == {i for i, r in enumerate(m.regex_list)
                                  if re2.compile(r, QUIET).search(text)}  # fmt: skip
    assert f.hits == {m: found_phrases, m.regex_cache_key: found_regexes}
    assert m.scan(f) == (found_phrases, found_regexes)  # from the cache


def test_scan_of_message_text_reads_subject_and_body() -> None:
    m = FieldMatcher("message.text", Facts.text)
    for p in ["refund", "order question"]:
        m.add_phrase(Phrase(p, tuple(words(p)), ""))
    m.add_regex(r"(?i)\border\s*#?\s*o-?\d{4,}")
    m.build()
    for subject in ("Order question", None):
        f = Facts(make_input("Refund order o-12345 please", subject=subject), SimpleNamespace())
        phrases, regexes = m.scan(f)
        assert f.text_cache == f.text() == ("Order question\n" if subject else "") + (
            "Refund order o-12345 please")
        assert set(phrases) == ({0, 1} if subject else {0})
        assert set(regexes) == {0}
        assert f.phrase_hits(m) is phrases
        assert f.regex_hits(m) is regexes
