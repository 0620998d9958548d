"""`router email parse FILE... [--json]`: per file the record, the reason or the class."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from router.cli import app
from tests.unit.email.support import mail


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    good, auto, bad = tmp_path / "good.eml", tmp_path / "auto.eml", tmp_path / "bad.eml"
    good.write_bytes(mail(Subject="Order #A1234567 late"))
    auto.write_bytes(mail(Auto_Submitted="auto-replied"))
    bad.write_bytes(mail(From="nobody"))
    return [good, auto, bad]


def test_json_lines_one_per_file(files: list[Path]) -> None:
    result = CliRunner().invoke(app, ["email", "parse", "--json", *map(str, files)])
    assert result.exit_code == 0, result.output
    docs = [orjson.loads(line) for line in result.output.splitlines()]
    assert [d["outcome"] for d in docs] == ["record", "auto_reply", "refused"]
    record = docs[0]["record"]
    assert record["type"] == "support.message.received"
    assert record["data"]["order_id"] == "A1234567"
    assert docs[2]["reason"] == "no_sender"


def test_text_lines_and_an_unreadable_file(files: list[Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.eml"
    result = CliRunner().invoke(app, ["email", "parse", str(files[0]), str(missing), str(files[2])])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{files[0]}: record first@buyer.example thread=email:")
    assert "order_id=A1234567" in lines[0]
    assert f"{missing}: cannot read: No such file or directory" in lines
    assert lines[-1].startswith(f"{files[2]}: refused no_sender: ")
