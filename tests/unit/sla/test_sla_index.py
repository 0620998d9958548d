"""The in-memory deadline index: ordering, supersede/cancel, bounded memory, partitions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from router.sla.index import DeadlineIndex, PartitionedDeadlineIndex


def test_pops_due_keys_earliest_first_and_only_once() -> None:
    index = DeadlineIndex()
    index.add(30.0, "c")
    index.add(10.0, "a")
    index.add(20.0, "b")
    assert index.pop_due(5.0) == []
    assert index.pop_due(20.0) == ["a", "b"]
    assert index.pop_due(20.0) == []
    assert len(index) == 1
    assert index.next_due() == 30.0


def test_a_new_due_time_supersedes_the_old_one() -> None:
    index = DeadlineIndex()
    index.add(10.0, "t")
    index.add(50.0, "t")  # rescheduled later: the 10.0 entry is stale
    assert index.pop_due(20.0) == []
    index.add(5.0, "t")  # and earlier again
    assert index.pop_due(5.0) == ["t"]
    assert index.pop_due(100.0) == []


def test_discard_cancels() -> None:
    index = DeadlineIndex()
    index.add(10.0, "t")
    index.discard("t")
    index.discard("never-added")
    assert "t" not in index
    assert index.next_due() is None
    assert index.pop_due(100.0) == []


def test_limit_leaves_the_rest_for_the_next_tick() -> None:
    index = DeadlineIndex()
    for n in range(5):
        index.add(float(n), f"k{n}")
    assert index.pop_due(10.0, limit=2) == ["k0", "k1"]
    assert index.pop_due(10.0) == ["k2", "k3", "k4"]


def test_rebuild_replaces_the_contents_and_skips_idle_tickets() -> None:
    index = DeadlineIndex()
    index.add(1.0, "old")
    index.rebuild([(20.0, "b"), None, (10.0, "a")])
    assert "old" not in index
    assert index.pop_due(100.0) == ["a", "b"]


def test_superseded_entries_are_compacted() -> None:
    index = DeadlineIndex()
    for n in range(10_000):
        index.add(float(n), "busy-ticket")
    assert index.stored_entries <= 2 + 1024
    assert index.pop_due(1e9) == ["busy-ticket"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "discard", "pop"]),
            st.integers(0, 20),
            st.sampled_from("abcdef"),
        ),
        max_size=60,
    )
)
def test_agrees_with_a_dict_of_due_times(operations: list[tuple[str, int, str]]) -> None:
    index, model = DeadlineIndex(), dict[str, float]()
    for operation, time, key in operations:
        if operation == "add":
            index.add(float(time), key)
            model[key] = float(time)
        elif operation == "discard":
            index.discard(key)
            model.pop(key, None)
        else:
            due = sorted((t, k) for k, t in model.items() if t <= time)
            assert index.pop_due(float(time)) == [k for _, k in due]
            for _, k in due:
                del model[k]
    assert len(index) == len(model)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "discard", "pop", "next", "rebuild"]),
            # spread over several buckets, bucket edges and fractions of a second included
            st.integers(0, 12).map(lambda n: n * 32.0)
            | st.floats(0, 400, allow_nan=False).map(lambda t: round(t, 3)),
            st.sampled_from("abcdefgh"),
            st.none() | st.integers(0, 3),
        ),
        max_size=80,
    )
)
def test_agrees_with_a_dict_of_due_times_across_buckets_and_limits(
    operations: list[tuple[str, float, str, int | None]],
) -> None:
    index, model = DeadlineIndex(), dict[str, float]()
    for operation, time, key, limit in operations:
        if operation == "add":
            index.add(time, key)
            model[key] = time
        elif operation == "discard":
            index.discard(key)
            model.pop(key, None)
        elif operation == "next":
            assert index.next_due() == min(model.values(), default=None)
        elif operation == "rebuild":  # bulk-loaded entries, then mixed with added ones
            index.rebuild([(t, k) for k, t in model.items()] + [None])
        else:
            due = sorted((t, k) for k, t in model.items() if t <= time)[:limit]
            assert index.pop_due(time, limit) == [k for _, k in due]
            for _, k in due:
                del model[k]
        assert index.stored_entries >= len(index) == len(model)


def test_partitions_fire_only_while_assigned() -> None:
    index = PartitionedDeadlineIndex()
    index.assign(0, [(10.0, "a")])
    index.assign(1, [(10.0, "b")])
    index.add(2, 5.0, "standby-replica")  # partition 2 is not assigned here: ignored
    index.revoke(1)
    assert index.partitions == frozenset({0})
    assert index.pop_due(20.0) == [(0, "a")]
    index.add(0, 30.0, "c")
    index.add(0, 31.0, "d")
    assert index.pop_due(40.0, limit=1) == [(0, "c")]
    assert len(index) == 1
