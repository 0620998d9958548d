"""The parser on mutated messages (truncated parts, bad boundaries, bad encodings, random bytes):
every input gives a record, a classification or a reason; nothing raises or hangs."""

from __future__ import annotations

import base64
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.email.parse import Classified, Parsed
from router.inbound import Rejected
from tests.unit.email.support import mail, parse

B = "fz"
SEEDS = [
    mail(),
    mail(Subject="=?gb2312?B?1ebKtQ==?=", Content_Type="text/plain; charset=gb2312",
         Content_Transfer_Encoding="base64",
         body=base64.encodebytes("订单".encode("gb2312")).decode()),
    mail(Content_Type=f'multipart/alternative; boundary="{B}"', body=(
        f"--{B}\nContent-Type: text/plain; charset=iso-8859-1\n"
        "Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe=\n\n"
        f"--{B}\nContent-Type: text/html\n\n<p>Gr&uuml;&szlig;e</p>\n--{B}--\n")),
    mail(Content_Type=f'multipart/report; report-type=delivery-status; boundary="{B}"', body=(
        f"--{B}\nContent-Type: message/delivery-status\n\nAction: failed\n\n"
        f"--{B}\nContent-Type: message/rfc822\n\nMessage-ID: <a@b>\n\nx\n--{B}--\n")),
    mail(Content_Type=f'multipart/mixed; boundary="{B}"', body=(
        f"--{B}\nContent-Type: text/plain\n\nsee file\n--{B}\n"
        'Content-Type: application/pdf; name="=?utf-8?q?a=C3=A4.pdf?="\n'
        "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n"
        f"--{B}\nContent-Type: message/rfc822\n\nSubject: fwd\n\ninner\n--{B}--\n")),
]  # fmt: skip

NOISE = [b"--", b"--fz", b"--fz--", b"=?", b"?=", b"=?utf-8?B?", b"=ZZ", b"\r\n\r\n", b"\x00",
         b"\xff\xfe", b"\x1b$B", b"Content-Type: multipart/mixed; boundary=\"fz\"\r\n",
         b"Content-Transfer-Encoding: base64\r\n", b"charset=x-nothing", b"<html><",
         b"\r\n "]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 3))
        if kind == 0:  # truncate
            del data[at:]
        elif kind == 1:  # insert a token that means something to MIME
            data[at:at] = draw(st.sampled_from(NOISE))
        elif kind == 2:  # random bytes
            data[at:at] = draw(st.binary(max_size=40))
        else:  # delete a span
            del data[at : at + draw(st.integers(1, 50))]
    return bytes(data)


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def fail(*_: object) -> None:
        raise AssertionError(f"the parser took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated())
def test_mutated_messages_never_raise(raw: bytes) -> None:
    with time_limit(5):
        outcome = parse(raw)
    assert isinstance(outcome, Parsed | Classified | Rejected)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    with time_limit(5):
        outcome = parse(raw)
    assert isinstance(outcome, Parsed | Classified | Rejected)


def test_deep_nesting_is_refused_not_a_crash() -> None:
    depth = 3000  # past the stdlib parser's recursion limit as well as ours
    body = "".join(f'--b{i}\nContent-Type: multipart/mixed; boundary="b{i + 1}"\n\n'
                   for i in range(depth))  # fmt: skip
    with time_limit(20):
        outcome = parse(mail(Content_Type='multipart/mixed; boundary="b0"', body=body))
    assert isinstance(outcome, Rejected)
    assert outcome.reason.value == "mime_too_deep"
