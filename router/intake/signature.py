"""Request signatures: `X-Router-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`.

The HMAC covers `"<t>.<raw body>"` with a secret shared between the gateway and one source.
A source may hold several secrets at once (rotation): a request is authentic when any `v1`
in its header matches any of them. Comparisons are constant-time (`hmac.compare_digest`).
Secrets are passed in as bytes and never appear in a result or an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

SIGNATURE_HEADER = "X-Router-Signature"
SOURCE_HEADER = "X-Router-Source"
SCHEME = "v1"
# A header longer than this is refused unread: a few signatures during a rotation fit.
MAX_HEADER_CHARS = 1024
MAX_SIGNATURES = 4
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class SignatureProblem(StrEnum):
    MISSING = "signature_missing"
    MALFORMED = "signature_malformed"
    UNKNOWN_SOURCE = "unknown_source"
    STALE = "signature_stale"
    MISMATCH = "signature_mismatch"
    REPLAYED = "signature_replayed"


@dataclass(frozen=True, slots=True)
class Verified:
    timestamp: int
    digest: str  # the matching v1 value: the replay guard's key


@dataclass(frozen=True, slots=True)
class Unverified:
    problem: SignatureProblem
    error: str


def digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The header value a source sends (what `openssl dgst -sha256 -hmac` computes)."""
    return f"t={timestamp},{SCHEME}={digest(secret, timestamp, body)}"


def parse_header(header: str) -> tuple[int, list[str]] | Unverified:
    """`t=...,v1=...[,v1=...]` -> (timestamp, digests); other schemes are ignored."""
    if len(header) > MAX_HEADER_CHARS:
        return Unverified(SignatureProblem.MALFORMED, "signature header is too long")
    timestamp: int | None = None
    digests: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return Unverified(SignatureProblem.MALFORMED, "expected t=<unix seconds>,v1=<hex>")
        if name == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                return Unverified(SignatureProblem.MALFORMED, "t must be one unix time in seconds")
            timestamp = int(value)
        elif name == SCHEME:
            if not _DIGEST.fullmatch(value):
                return Unverified(
                    SignatureProblem.MALFORMED, "v1 must be 64 lowercase hex digits (HMAC-SHA256)"
                )
            digests.append(value)
    if timestamp is None or not digests:
        return Unverified(SignatureProblem.MALFORMED, "expected t=<unix seconds>,v1=<hex>")
    if len(digests) > MAX_SIGNATURES:
        return Unverified(SignatureProblem.MALFORMED, f"at most {MAX_SIGNATURES} v1 signatures")
    return timestamp, digests


def verify(
    header: str | None,
    body: bytes,
    secrets: Sequence[bytes],
    now: float,
    window_s: float,
) -> Verified | Unverified:
    """Whether `body` was signed by a holder of one of `secrets` within `window_s` of `now`."""
    if not header:
        return Unverified(SignatureProblem.MISSING, f"{SIGNATURE_HEADER} header is required")
    parsed = parse_header(header)
    if isinstance(parsed, Unverified):
        return parsed
    timestamp, digests = parsed
    if abs(now - timestamp) > window_s:
        return Unverified(
            SignatureProblem.STALE,
            f"signature time is outside the {window_s:.0f} s window around the gateway's clock",
        )
    expected = [digest(secret, timestamp, body) for secret in secrets]
    match: str | None = None
    # every comparison runs (no early exit): the time taken does not depend on which matched
    for candidate in digests:
        for wanted in expected:
            if hmac.compare_digest(candidate, wanted):
                match = candidate
    if match is None:
        return Unverified(SignatureProblem.MISMATCH, "signature does not match the body")
    return Verified(timestamp, match)
