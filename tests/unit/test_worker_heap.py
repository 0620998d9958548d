"""The worker's heap after start-up: garbage collected, the rest frozen, young collections rarer."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.worker import YOUNG_GENERATION_THRESHOLD, settle_heap


class _Node:
    def __init__(self) -> None:
        self.peer: _Node | None = None


@pytest.fixture
def restored_gc() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_settling_collects_start_up_garbage_then_freezes_the_rest(
    restored_gc: tuple[int, int, int],
) -> None:
    a, b = _Node(), _Node()
    a.peer, b.peer = b, a  # a cycle: only a collection frees it
    gone = weakref.ref(a)
    del a, b
    frozen = settle_heap()
    assert gone() is None  # collected before the freeze, not kept for good
    assert frozen == gc.get_freeze_count() > 0
    assert len(gc.get_objects()) < frozen  # later collections walk far fewer objects
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *restored_gc[1:])


def test_cycles_made_after_settling_are_still_collected(
    restored_gc: tuple[int, int, int],
) -> None:
    settle_heap()
    a, b = _Node(), _Node()
    a.peer, b.peer = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
