"""Request signatures: what verifies, and each way a header is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from router.intake.signature import (
    MAX_HEADER_CHARS,
    SignatureProblem,
    Unverified,
    Verified,
    parse_header,
    sign,
    verify,
)

SECRET = b"0123456789abcdef-current"
NEXT = b"0123456789abcdef-next"
BODY = b'{"hello": "world"}'
NOW = 1_767_225_600


def test_the_signature_is_hmac_sha256_of_t_dot_body() -> None:
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, NOW) == f"t={NOW},v1={expected}"


def test_a_signed_body_verifies_and_names_its_digest() -> None:
    header = sign(SECRET, BODY, NOW)
    result = verify(header, BODY, [SECRET], NOW + 10, 300)
    assert isinstance(result, Verified)
    assert result.timestamp == NOW
    assert header.endswith(result.digest)


def test_either_secret_of_a_rotation_verifies() -> None:
    assert isinstance(verify(sign(NEXT, BODY, NOW), BODY, [SECRET, NEXT], NOW, 300), Verified)
    both = f"{sign(SECRET, BODY, NOW)},v1={sign(NEXT, BODY, NOW).split('v1=')[1]}"
    assert isinstance(verify(both, BODY, [NEXT], NOW, 300), Verified)


@pytest.mark.parametrize(
    ("header", "body", "now", "problem"),
    [
        (None, BODY, NOW, SignatureProblem.MISSING),
        ("", BODY, NOW, SignatureProblem.MISSING),
        ("v1=abc", BODY, NOW, SignatureProblem.MALFORMED),
        (f"t={NOW}", BODY, NOW, SignatureProblem.MALFORMED),
        (f"t=-{NOW},v1={'0' * 64}", BODY, NOW, SignatureProblem.MALFORMED),
        (f"t={NOW},v1={'G' * 64}", BODY, NOW, SignatureProblem.MALFORMED),
        (f"t={NOW},t={NOW},v1={'0' * 64}", BODY, NOW, SignatureProblem.MALFORMED),
        (f"t={NOW},v1={'0' * 64}" + ",x" * MAX_HEADER_CHARS, BODY, NOW, SignatureProblem.MALFORMED),
        (sign(SECRET, BODY, NOW), BODY + b" ", NOW, SignatureProblem.MISMATCH),
        (sign(b"someone-else's-secret", BODY, NOW), BODY, NOW, SignatureProblem.MISMATCH),
        (sign(SECRET, BODY, NOW), BODY, NOW + 301, SignatureProblem.STALE),
        (sign(SECRET, BODY, NOW), BODY, NOW - 301, SignatureProblem.STALE),  # from the future
    ],
)
def test_refusals(header: str | None, body: bytes, now: int, problem: SignatureProblem) -> None:
    result = verify(header, body, [SECRET], now, 300)
    assert isinstance(result, Unverified)
    assert result.problem is problem
    assert SECRET.decode() not in result.error


def test_other_schemes_are_ignored_but_one_v1_is_needed() -> None:
    header = sign(SECRET, BODY, NOW) + ",v0=whatever"
    assert isinstance(verify(header, BODY, [SECRET], NOW, 300), Verified)
    assert isinstance(parse_header(f"t={NOW},v0=abc"), Unverified)
