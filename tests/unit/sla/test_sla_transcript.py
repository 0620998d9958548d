"""The SLA core's behaviour over a long randomised run stays byte-identical (see transcript.py).

A change that alters any output record, stored state or index entry changes the digest. When
that is intended, check the diff of the transcripts before and after, then update DIGEST.
"""

from __future__ import annotations

from tests.unit.sla.transcript import digest, transcript

DIGEST = "2db59112f9963a0eccba062a5b462ce44e2e483a7638e9022081fa7bb96d844c"


def test_transcript_is_unchanged() -> None:
    assert digest(transcript()) == DIGEST, (
        "SLA behaviour changed: diff `python -m tests.unit.sla.transcript <file>` before/after"
    )
