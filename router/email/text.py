"""Text out of mail bytes: charsets, encoded-word headers, HTML, quoted history.

Nothing here raises on bad input: an unknown or wrong charset falls back to detection
(charset-normalizer), then to UTF-8 with replacement characters.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass

from charset_normalizer import from_bytes

# Labels mail clients use that Python lacks, or that name a subset of what is really sent
# (GB2312 mail is GBK/GB18030 in practice, ISO-2022-JP often carries the extensions).
_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-2022-jp": "iso2022_jp_ext",
    "ks_c_5601-1987": "cp949",
    "unicode-1-1-utf-7": "utf-7",
    "x-unknown": "",
    "unknown-8bit": "",
    "us-ascii": "ascii",
}
_DETECT_SAMPLE = 32 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    charset: str  # the codec used
    repaired: bool  # the declared charset was missing, unknown or wrong


def codec_of(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when there is none."""
    if not label:
        return None
    name = label.strip().strip('"').lower()
    name = _ALIASES.get(name, name)
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def decode_bytes(data: bytes, declared: str | None, hint: str | None = None) -> Decoded:
    """Bytes in a declared (maybe wrong) charset -> text; `hint` is a charset the enclosing
    message declares, tried when this part declares none."""
    codec = codec_of(declared)
    if codec is not None:
        # valid UTF-8 with non-ASCII bytes is almost never another charset by chance: the
        # label is wrong (a common mislabel, e.g. latin-1 or gb2312 declared, UTF-8 sent)
        if codec != "utf-8" and not data.isascii() and _utf8(data) is not None:
            return Decoded(data.decode("utf-8"), "utf-8", True)
        try:
            return Decoded(data.decode(codec), codec, False)
        except (UnicodeDecodeError, LookupError, ValueError):
            pass
    if data.isascii():
        return Decoded(data.decode("ascii"), "ascii", codec is None and declared is not None)
    text = _utf8(data)
    if text is not None:
        return Decoded(text, "utf-8", declared is None or codec != "utf-8")
    if codec is None and hint is not None and codec_of(hint) is not None:
        try:  # a part without a charset, in a message that declares one
            return Decoded(data.decode(codec_of(hint) or "utf-8"), codec_of(hint) or "", True)
        except (UnicodeDecodeError, LookupError, ValueError):
            pass
    if _mostly_utf8(data):  # pasted text in two charsets: UTF-8, with a few latin-1 bytes
        return Decoded(data.decode("utf-8", _LATIN1_FALLBACK), "utf-8", True)
    best = from_bytes(data[:_DETECT_SAMPLE]).best()
    if best is not None and codec_of(best.encoding) is not None:
        encoding = codec_of(best.encoding) or "utf-8"
        return Decoded(data.decode(encoding, "replace"), encoding, True)
    return Decoded(data.decode(codec or "utf-8", "replace"), codec or "utf-8", True)


def _latin1_fallback(exc: UnicodeError) -> tuple[str, int]:
    assert isinstance(exc, UnicodeDecodeError)
    return exc.object[exc.start : exc.end].decode("cp1252", "replace"), exc.end


_LATIN1_FALLBACK = "router-email-latin1-fallback"
codecs.register_error(_LATIN1_FALLBACK, _latin1_fallback)


def _mostly_utf8(data: bytes) -> bool:
    """Some valid multi-byte UTF-8 sequences, and few bytes that are not."""
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ord(ch) > 0x7F and ch != "\ufffd")
    return good > 0 and bad <= good


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_QP_BYTE = re.compile(rb"=([0-9A-Fa-f]{2})")


def header_text(raw: str, hint: str | None = None) -> str:
    """A raw header value -> text: RFC 2047 encoded-words in any charset (also malformed
    ones), raw 8-bit bytes (handed over as surrogate escapes) detected, folding and control
    characters removed. Our own decoder: the stdlib's gives up on unknown charsets."""
    text = _surrogates(raw, hint)
    out: list[str] = []
    at = 0
    previous_word = False
    for match in _ENCODED_WORD.finditer(text):
        between = text[at : match.start()]
        if not (previous_word and not between.strip()):  # space between two words is folding
            out.append(between)
        out.append(_word(match.group(1), match.group(2), match.group(3)))
        at = match.end()
        previous_word = True
    out.append(text[at:])
    return " ".join(_CONTROL.sub("", "".join(out)).split())


def _word(charset: str, encoding: str, payload: str) -> str:
    data = payload.encode("ascii", "replace")
    if encoding in "bB":
        try:
            raw = base64.b64decode(data + b"=" * (-len(data) % 4), validate=False)
        except (binascii.Error, ValueError):
            return payload
    else:
        raw = _QP_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), data.replace(b"_", b" "))
    return decode_bytes(raw, charset.split("*")[0]).text  # RFC 2231: charset*language


def _surrogates(text: str, hint: str | None = None) -> str:
    """Headers with raw 8-bit bytes arrive as surrogate escapes: decode those bytes."""
    if text.isascii() or not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    data = text.encode("utf-8", "surrogateescape")
    return decode_bytes(data, None, hint).text


def html_to_text(html: str) -> str:
    """Readable text from an HTML body (paragraphs, lists and tables laid out as text)."""
    from inscriptis import get_text

    cleaned = _CONTROL.sub("", html).strip()
    if not cleaned:
        return ""
    try:
        text: str = get_text(cleaned)
    except Exception:  # lxml refuses some documents (e.g. only a comment): fall back to tags off
        text = re.sub(r"<[^>]*>", " ", cleaned)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


@dataclass(frozen=True, slots=True)
class Reply:
    text: str  # the new text
    trimmed: bool  # quoted history or a signature was cut


# the reply parser's patterns are regexes over the whole body: bounded input keeps it fast
_MAX_REPLY_INPUT = 64 * 1024


def latest_reply(text: str, languages: tuple[str, ...]) -> Reply:
    """The new text of a message, without the quoted history and signature under it."""
    from mailparser_reply import EmailReplyParser

    whole = text.strip()
    if not whole:
        return Reply("", False)
    head = whole[:_MAX_REPLY_INPUT]
    try:
        found = EmailReplyParser(languages=list(languages)).read(head)
        reply = found.replies[0].body if found.replies else ""
    except Exception:  # a library bug must not cost the message: keep the whole text
        return Reply(whole, False)
    if len(whole) > len(head) and _squash(reply) == _squash(head):
        return Reply(whole, False)  # nothing cut in the head: the rest is new text too
    reply = _drop_quoted_tail(reply.strip())
    if not reply:  # all of it was quoted (a forward without a note): keep everything
        return Reply(whole, False)
    return Reply(reply, _squash(reply) != _squash(whole))


def _drop_quoted_tail(text: str) -> str:
    """`>`-quoted lines at the end (a bottom-quoting client without an attribution line)."""
    lines = text.splitlines()
    while lines and (lines[-1].lstrip().startswith(">") or not lines[-1].strip()):
        lines.pop()
    return "\n".join(lines)


def _squash(text: str) -> str:
    return "".join(text.split())


# Re (en), AW/WG (de), SV (sv/da/no), VS (fi), Rif/R (it), Antw (nl), Odp (pl), YNT (tr),
# TR (fr), RV/ENC (es/pt), Fwd/FW, Doorst (nl); the fullwidth colon of CJK clients
_PREFIXES = "re|aw|sv|vs|rif|r|antw|odp|ynt|fw|fwd|wg|tr|rv|enc|doorst"
_PREFIX = re.compile(rf"^\s*(?:(?:{_PREFIXES})\s*(?:\[\d+\])?\s*[:\uff1a]\s*)+", re.IGNORECASE)


def subject_key(subject: str) -> str:
    """A subject without reply/forward prefixes (`Re:`, `AW:`, `SV:`, `Rif:`, `Fwd:`, ...),
    lowercased: the same for every message of a thread."""
    return " ".join(_PREFIX.sub("", subject).split()).casefold()
