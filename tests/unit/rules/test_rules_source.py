"""The one YAML/JSON loader (`rules.source`) and every input file read through it: a key
given twice is an error naming the field and both lines, never a silent last-copy-wins."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import typer
import yaml

from router.cli_settings import load_settings
from router.cli_vendors import load_profiles
from router.sla.policy import DEFAULT_POLICY_FILE, SlaPolicyError, load_sla_config
from rules import load_ruleset_document, parse_ruleset_text
from rules.source import MAX_DEPTH, LoadError, gc_paused, parse_text
from streams.settings import SettingsFileError, read_settings_file
from tests.unit.rules.rules_support import EXAMPLES, ruleset_text
from tests.unit.sla.sla_support import POLICY_YAML

TWO_WHENS = ruleset_text(
    "- id: a\n"
    "  when: {field: message.channel, eq: chat}\n"
    "  when: {field: message.channel, eq: email}\n"
    "  then: {route: 'dept:general'}\n"
)


def _line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth - 1]


def test_a_rule_with_two_whens_is_refused_with_both_lines() -> None:
    found = parse_ruleset_text(TWO_WHENS, "two.yaml")
    assert isinstance(found, list)
    (problem,) = found
    first, second = _line_of(TWO_WHENS, "when:"), _line_of(TWO_WHENS, "when:", 2)
    assert (problem.file, problem.line) == ("two.yaml", second)
    assert problem.message == (
        f"rules[0].when: duplicate key at lines {first} and {second} (only one copy may be given)"
    )
    assert str(problem).startswith(f"two.yaml:{second}: rules[0].when: duplicate key")


def test_a_repeated_json_key_is_refused_with_both_lines() -> None:
    text = (
        '{"name": "t", "version": "1", "departments": ["general"],\n'
        ' "rules": [\n'
        '  {"id": "a", "then": {"route": "dept:general",\n'
        '                      "route": "dept:other"}}]}\n'
    )
    found = parse_ruleset_text(text, "dup.json")
    assert isinstance(found, list)
    assert [(p.line, p.message) for p in found] == [
        (4, "rules[0].then.route: duplicate key at lines 3 and 4 (only one copy may be given)")
    ]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_the_same_key_in_different_mappings_is_fine(fmt: str) -> None:
    doc = {"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 3}, {"x": 4}]}
    text = yaml.safe_dump(doc) if fmt == "yaml" else json.dumps(doc, indent=1)
    assert parse_text(text, f"f.{fmt}").data == doc


def test_a_ruleset_record_with_a_duplicate_key_is_refused() -> None:
    good = parse_ruleset_text(ruleset_text("- {id: a, then: {route: 'dept:general'}}\n"), "x.yaml")
    assert not isinstance(good, list)
    doc = json.dumps({"specversion": "1.0", "id": "r", "source": "s", "type": "t",
                      "data": good.doc.to_document()}, indent=1)  # fmt: skip
    assert not isinstance(load_ruleset_document(doc.encode()), list)
    twice = doc.replace('"version": "1",', '"version": "1",\n"version": "2",', 1)
    found = load_ruleset_document(twice.encode(), source="routing.rules")
    assert isinstance(found, list)
    assert "version: duplicate key at lines" in found[0].message
    envelope_twice = doc.replace('"id": "r",', '"id": "r",\n"data": {},', 1)
    found = load_ruleset_document(envelope_twice.encode())
    assert isinstance(found, list)
    assert found[0].message.startswith("data: duplicate key at lines 4 and ")


def test_lines_point_at_each_key_and_list_item_in_both_formats() -> None:
    doc = {"name": "t", "rules": [{"id": "a", "when": {"all": [{"x": 1}, {"y": 2}]}}],
           "tags": ["p", "q"]}  # fmt: skip
    text = json.dumps(doc, indent=2)
    src = parse_text(text, "f.json")
    assert src.data == doc
    assert src.line(("rules", 0, "when", "all", 1, "y")) == _line_of(text, '"y"')
    assert src.line(("tags", 1)) == _line_of(text, '"q"')
    ytext = yaml.safe_dump(doc, default_flow_style=False)
    ysrc = parse_text(ytext, "f.yaml")
    assert ysrc.data == doc
    assert ysrc.line(("rules", 0, "when", "all", 1, "y")) == _line_of(ytext, "y: 2")
    assert ysrc.line(("tags", 1)) == _line_of(ytext, "- q")


@pytest.mark.parametrize("path", [*sorted(EXAMPLES.glob("*.y*ml")), DEFAULT_POLICY_FILE])
def test_yaml_files_read_as_pyyaml_reads_them(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert parse_text(text, str(path), aliases=True).data == yaml.safe_load(text)


def test_json_files_read_as_json_reads_them() -> None:
    text = (EXAMPLES / "starter.json").read_text(encoding="utf-8")
    assert parse_text(text, "starter.json").data == json.loads(text)


def test_aliases_and_merge_keys_only_where_allowed() -> None:
    text = "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 9\n"
    with pytest.raises(LoadError, match=r"a.yaml:2: invalid YAML: aliases \(\*name\) are not"):
        parse_text("base: &b {x: 1, y: 2}\nm: *b\n", "a.yaml")
    with pytest.raises(LoadError, match=r"m: merge keys \(<<\) are not allowed"):
        parse_text("m:\n  <<: {x: 1}\n", "a.yaml")
    src = parse_text(text, "a.yaml", aliases=True)
    assert src.data == yaml.safe_load(text) == {"base": {"x": 1, "y": 2}, "m": {"x": 9, "y": 2}}
    assert (src.line(("m", "x")), src.line(("m", "y"))) == (4, 3)
    with pytest.raises(LoadError, match="refers to a node that contains it"):
        parse_text("a: &a [1, *a]\n", "a.yaml", aliases=True)
    with pytest.raises(LoadError, match="duplicate key at lines 3 and 4"):
        parse_text("b: &b {x: 1}\nm:\n  x: 2\n  x: 3\n  <<: *b\n", "a.yaml", aliases=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- !!python/object/apply:os.system [echo]\n", "unsupported YAML tag"),
        ("!!set {a, b}\n", "unsupported YAML tag"),
        ("? [a, b]\n: c\n", "a key must be a string or a number"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH}"),
        ("a: [1\n", "invalid YAML"),
        ("a: 1\n---\nb: 2\n", "invalid YAML"),
    ],
)
def test_refused_yaml(text: str, message: str) -> None:
    with pytest.raises(LoadError, match=message) as caught:
        parse_text(text, "f.yaml")
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": [' * 2000 + "]}" * 2000, f"nested deeper than {MAX_DEPTH}"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH}"),
        ('{"a": 1,}', "invalid JSON"),
    ],
)
def test_refused_json(text: str, message: str) -> None:
    with pytest.raises(LoadError, match=message):
        parse_text(text, "f.json")


def test_sla_policy_file_with_a_duplicate_key(tmp_path: Path) -> None:
    text = POLICY_YAML.replace("default_policy: basic\n",
                               "default_policy: basic\ndefault_policy: escalating\n")  # fmt: skip
    assert text != POLICY_YAML
    path = tmp_path / "sla.yaml"
    path.write_text(text)
    first = _line_of(text, "default_policy:")
    with pytest.raises(SlaPolicyError) as caught:
        load_sla_config(path)
    assert str(caught.value) == (
        f"{path}:{first + 1}: default_policy: duplicate key at lines {first} and {first + 1}"
        " (only one copy may be given)"
    )


def test_sla_policy_file_problems_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(POLICY_YAML.replace("warning_at: 0.5", "warning_at: 5"))
    with pytest.raises(SlaPolicyError) as caught:
        load_sla_config(path)
    line = _line_of(POLICY_YAML, "warning_at: 0.5")
    assert str(caught.value).startswith(f"{path}:{line}: policies.basic.warning_at: ")
    with pytest.raises(SlaPolicyError, match="cannot read"):
        load_sla_config(tmp_path / "missing.yaml")
    with pytest.raises(SlaPolicyError, match="cannot read"):
        load_sla_config(tmp_path)


def test_settings_file_with_a_duplicate_or_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("partitions: 3\ntopic_prefix: a.\npartitions: 12\n")
    with pytest.raises(SettingsFileError) as caught:
        read_settings_file(path)
    assert str(caught.value) == (
        f"{path}:3: partitions: duplicate key at lines 1 and 3 (only one copy may be given)"
    )
    json_path = tmp_path / "router.json"
    json_path.write_text('{"partitions": 3,\n "partitions": 4}')
    with pytest.raises(SettingsFileError, match="partitions: duplicate key at lines 1 and 2"):
        read_settings_file(json_path)
    path.write_text("partitions: 3\npartitons: 12\n")
    with pytest.raises(SettingsFileError, match=r"router.yaml:2: partitons: unknown setting"):
        read_settings_file(path)
    path.write_text("- partitions\n")
    with pytest.raises(SettingsFileError, match="holds a mapping"):
        read_settings_file(path)
    path.write_text("partitions: 3\n")
    assert read_settings_file(path) == {"partitions": 3}


def test_the_cli_reports_bad_settings_in_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROUTER_SETTINGS_FILE", "")  # restored after the test
    path = tmp_path / "router.yaml"
    for text, expected in [
        ("partitions: 0\n", "invalid settings: partitions: Input should be greater than or "
                             "equal to 1\n"),
        ("partitions: 1\npartitions: 2\n", f"invalid settings: {path}:2: partitions: duplicate "
                                          "key at lines 1 and 2 (only one copy may be given)\n"),
    ]:  # fmt: skip
        path.write_text(text)
        with pytest.raises(typer.Exit) as caught:
            load_settings(path)
        assert caught.value.exit_code == 2
        assert capsys.readouterr().err == expected


def test_vendor_file_with_a_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "vendors.yaml"
    path.write_text("- vendor_id: acme\n  tier: gold\n  tier: silver\n")
    profiles, problems = load_profiles(path)
    assert profiles == []
    assert problems == [
        f"{path}:3: [0].tier: duplicate key at lines 2 and 3 (only one copy may be given)"
    ]
    path.write_text("vendors:\n- {vendor_id: acme}\n- {vendor_id: zed, response_hours: -1}\n"
                    "- {vendor_id: acme}\n")  # fmt: skip
    profiles, problems = load_profiles(path)
    assert [p.vendor_id for p in profiles] == ["acme"]
    assert problems == [
        f"{path}:3: vendors[1] (zed): response_hours: Input should be greater than 0",
        f"{path}:4: vendors[2] (acme): vendor 'acme' listed twice (first at line 2)",
    ]
    path.write_text('[{"vendor_id": "acme",\n  "vendor_id": "acme-2"}]')
    assert load_profiles(path)[1] == [
        f"{path}:2: [0].vendor_id: duplicate key at lines 1 and 2 (only one copy may be given)"
    ]


def test_loading_pauses_the_collector_and_always_restores_it() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause leaves the outer one alone
    assert gc.isenabled()
    with pytest.raises(LoadError):
        parse_text("a: 1\na: 2\n", "f.yaml")
    assert gc.isenabled()
    gc.disable()
    try:
        parse_text("a: 1\n", "f.yaml")
        assert not gc.isenabled()  # not switched on behind the caller's back
    finally:
        gc.enable()
