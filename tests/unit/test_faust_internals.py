"""The private faust / aiokafka attributes the engine relies on (`streams.kafka.faust_internals`,
`streams.kafka.transport`) still exist in the installed versions, and do what we use them for.
An upgrade that moves one fails here, loudly, instead of in production."""

from __future__ import annotations

import inspect
import re

import pytest

from streams.kafka.faust_internals import memory_store, private_names
from streams.kafka.transport import RouterApp
from streams.stages.runner import BatchTable


@pytest.mark.parametrize("name", sorted(private_names()))
def test_each_private_attribute_is_still_there(name: str) -> None:
    owner, attribute = private_names()[name]
    present = (
        hasattr(owner, attribute)
        or attribute in getattr(owner, "__annotations__", {})
        or re.search(rf"self\.{attribute}\s*(:[^=\n]*)?=", inspect.getsource(owner))  # per instance
    )
    assert present, f"{owner.__module__}.{owner.__qualname__}.{attribute} is gone ({name})"


def test_tables_name_their_changelog_after_the_base_app_and_keep_memory_dicts() -> None:
    app = RouterApp("shop-lifecycle", changelog_base_id="shop", broker="kafka://unused:9092",
                    store="memory://")  # fmt: skip
    table = app.Table("tickets", key_type=bytes, value_type=bytes, partitions=3)
    assert table.changelog_topic.get_topic_name() == "shop-tickets-changelog"
    data, owner = memory_store(table)
    batch = BatchTable.over(table)
    batch.partition = 2
    batch[b"k"] = b"v"
    assert batch.changelog == "shop-tickets-changelog"
    assert data == {}  # nothing is stored before the batch is flushed
    assert isinstance(owner, dict)
