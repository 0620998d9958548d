"""The README's fault table lists exactly the scenarios the cluster fault suite runs, each
with nothing lost or repeated (the table is copied from the suite's `build/fault-table.md`)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.chaos.faults import SCENARIOS

README = Path(__file__).resolve().parents[2] / "README.md"


def _table_rows() -> list[list[str]]:
    text = README.read_text()
    body = text.split("<!-- fault-table -->", 1)[1].split("<!-- /fault-table -->", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in body.strip().splitlines()]
    return [[cell.strip() for cell in row] for row in rows[2:]]  # after header and rule


def test_the_readme_table_has_one_row_per_scenario() -> None:
    assert sorted(row[0] for row in _table_rows()) == sorted(SCENARIOS.values())


def test_every_row_reports_nothing_lost_repeated_or_split() -> None:
    for scenario, inbound, lost, duplicates, split, poison, dlq in _table_rows():
        assert int(inbound) > 0, scenario
        assert (lost, duplicates, split) == ("0", "0", "0"), scenario
        assert int(poison) >= 0, scenario
        assert re.fullmatch(r"0 missing, 0 repeated", dlq), scenario
