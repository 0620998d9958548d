"""Stage processors: the logic of each Kafka stage, pure and synchronous.

A processor takes one consumed record (`InRecord`) and the time, reads and writes its own
table through a mapping, and returns the records to produce. It never raises on bad input:
a record it cannot process comes back as a dead-letter record. What it would log comes back
as `Note`s for the edge to write. `streams/` runs processors on Kafka (batching, table
changelogs, delivery); tests run them on dicts.
"""

from router.stages.contract import InRecord, Note, Processor

__all__ = ["InRecord", "Note", "Processor"]
