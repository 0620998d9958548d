"""A literal that every match of a regex contains, so ASCII text without it needs no RE2 call.

A call into RE2 costs about a microsecond even on a short text, more than the rest of a
rule's check; most messages cannot match a rule's regex because they lack one of its
literal words. `required_literal` reads the top level of a pattern and returns its longest
run of plain ASCII characters that every match must contain, lower-cased, or None when it
cannot tell.

It is deliberately conservative: it reads only a plain subset of the syntax (literal
characters, escaped punctuation, the single-letter escapes, classes and groups skipped as
opaque, quantifiers) and gives up (None) on anything else: top-level alternation, `\\x`,
`\\p`, `\\Q`, octal escapes, POSIX classes, malformed repetitions, flag groups after the
start (a quantifier after one applies to the atom before it). A quantifier that allows
zero repetitions drops its atom; any non-literal atom ends a run. Only ASCII text is
prefiltered: there, RE2's case folding of ASCII characters (`(?i)`) is exactly
`str.lower` (the non-ASCII members of their fold orbits, the Kelvin sign for `k` and the
long s for `s`, cannot occur), and a match contains the run in some letter case.
"""

from __future__ import annotations

import re

_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_FLAGS = re.compile(r"\(\?[A-Za-z-]*\)")  # a flag group: no atom of its own
_SIMPLE_ESCAPES = frozenset("bBAzdDwWsSntrfva")  # one-letter escapes: never a literal char
_SPECIAL = frozenset(".^$")


class _GiveUp(Exception):
    """The pattern uses syntax outside the subset read here."""


def _skip_class(p: str, i: int) -> int:
    """Index just past the class starting at p[i] == '['."""
    j = i + 1
    if j < len(p) and p[j] == "^":
        j += 1
    if j < len(p) and p[j] == "]":  # a leading ']' is a member
        j += 1
    while j < len(p):
        c = p[j]
        if c == "\\":
            if p[j + 1 : j + 2] in ("Q", ""):
                raise _GiveUp
            j += 2
        elif c == "[":  # POSIX classes ([:alpha:]) and friends
            raise _GiveUp
        elif c == "]":
            return j + 1
        else:
            j += 1
    raise _GiveUp


def _skip_group(p: str, i: int) -> int:
    """Index just past the group starting at p[i] == '('."""
    depth = 0
    j = i
    while j < len(p):
        c = p[j]
        if c == "\\":
            if p[j + 1 : j + 2] in ("Q", ""):
                raise _GiveUp
            j += 2
            continue
        if c == "[":
            j = _skip_class(p, j)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise _GiveUp


def _atom(p: str, i: int) -> tuple[str | None, int]:
    """(the literal character of the atom at p[i], or None when it is not one; next index)."""
    c = p[i]
    if c == "\\":
        nxt = p[i + 1 : i + 2]
        if not nxt:
            raise _GiveUp
        if nxt.isascii() and not nxt.isalnum():
            return nxt, i + 2
        if nxt in _SIMPLE_ESCAPES:
            return None, i + 2
        raise _GiveUp  # \x, \p, \Q, \C, octal...: not read here
    if c == "[":
        return None, _skip_class(p, i)
    if c == "(":
        if i and _FLAGS.match(p, i):  # `a(?i)*`: the quantifier applies to `a`
            raise _GiveUp
        return None, _skip_group(p, i)
    if c in "|)*+?{":  # alternation, or a quantifier without an atom
        raise _GiveUp
    if c in _SPECIAL or not c.isascii():
        return None, i + 1
    return c, i + 1


def _quantifier(p: str, i: int) -> tuple[int | None, int]:
    """(minimum repetitions of the quantifier at p[i], None when there is none; next index)."""
    if i >= len(p):
        return None, i
    c = p[i]
    if c in "*?+":
        low = 1 if c == "+" else 0
        i += 1
    elif c == "{":
        m = _REPEAT.match(p, i)
        if m is None:
            raise _GiveUp
        low = int(m.group(1))
        i = m.end()
    else:
        return None, i
    if p[i : i + 1] == "?":  # non-greedy
        i += 1
    return low, i


def required_literal(pattern: str) -> str | None:
    """The longest lower-cased ASCII run every match contains, or None when unsure."""
    runs: list[str] = []
    run: list[str] = []
    i = 0
    try:
        while i < len(pattern):
            char, i = _atom(pattern, i)
            low, i = _quantifier(pattern, i)
            if char is not None and low is None:
                run.append(char)
                continue
            if char is not None and low:  # at least once; the run cannot go on through it
                run.append(char)
            runs.append("".join(run))
            run = []
    except _GiveUp:
        return None
    runs.append("".join(run))
    best = max(runs, key=len)
    return best.lower() if best else None
