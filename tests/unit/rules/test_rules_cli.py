"""The `router rules ...` and `router simulate` commands (no broker needed)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from router.cli_rules import rules_app, simulate
from tests.unit.rules.rules_support import EXAMPLES, ruleset_text

app = typer.Typer()
app.add_typer(rules_app, name="rules")
app.command("simulate")(simulate)
runner = CliRunner()

V1 = str(EXAMPLES / "marketplace.yaml")
V2 = str(EXAMPLES / "marketplace-v2.yaml")


def test_validate_ok_and_problems(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["rules", "validate", V1, V2])
    assert ok.exit_code == 0, ok.output
    assert "marketplace 1.0.0" in ok.stdout
    assert "marketplace 2.0.0" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(ruleset_text(
        "- id: a\n  when: {field: message.chanel, eq: chat}\n  then: {route: 'dept:nope'}\n"
    ))  # fmt: skip
    known = ["--sla-policies", "urgent_sla,vip,standard"]
    res = runner.invoke(app, ["rules", "validate", str(bad), *known])
    assert res.exit_code == 1
    assert f"{bad}:" in res.stderr
    assert "rule a: unknown field path 'message.chanel'" in res.stderr
    assert "unknown department 'nope'" in res.stderr
    assert "no catch-all" in res.stderr
    assert "3 problems" in res.stderr
    as_json = runner.invoke(app, ["rules", "validate", "--json", str(bad), *known])
    assert as_json.exit_code == 1
    rows = [json.loads(line) for line in as_json.stdout.splitlines() if line.strip()]
    assert {r["rule"] for r in rows} == {"a", None}


def test_validate_against_engine_sla_policies() -> None:
    res = runner.invoke(app, ["rules", "validate", V1, "--sla-policies", "standard,vip"])
    assert res.exit_code == 1
    assert "unknown to the engine" in res.stderr


def test_validate_defaults_to_the_engine_sla_file(tmp_path: Path) -> None:
    """Without --sla-policies, rulesets are checked against the SLA file the engine runs
    with: the built-in one knows every policy the examples name; a custom file given with
    --sla-config (or ROUTER_SLA_POLICIES_FILE) is what counts when there is one."""
    odd = tmp_path / "odd.yaml"
    odd.write_text(ruleset_text("- {id: all, then: {route: 'dept:general'}}\n"))
    res = runner.invoke(app, ["rules", "validate", str(odd)])
    assert res.exit_code == 1
    assert "SLA policy 'urgent_sla' is unknown to the engine" in res.stderr
    assert "engine policies: disputes, priority, standard, vendor_standard, vip" in res.stderr
    builtin = Path(__file__).parents[3] / "router/sla/policies/default.yaml"
    custom = tmp_path / "sla.yaml"
    custom.write_text(builtin.read_text().replace("  priority:\n", "  urgent_sla:\n", 1))
    res = runner.invoke(app, ["rules", "validate", str(odd), "--sla-config", str(custom)])
    assert res.exit_code == 0, res.output
    missing = runner.invoke(app, ["rules", "validate", V1, "--sla-config", str(tmp_path / "no")])
    assert missing.exit_code == 1
    assert "cannot load SLA policies" in missing.stderr


def test_golden_cases_pass_and_fail() -> None:
    ok = runner.invoke(app, ["rules", "test", V1, str(EXAMPLES / "marketplace.cases.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "0 failed" in ok.stdout
    # v1 expectations against v2: the changed behaviour shows up as diffs.
    bad = runner.invoke(app, ["rules", "test", "-q", V2, str(EXAMPLES / "marketplace.cases.yaml")])
    assert bad.exit_code == 1
    assert "FAIL Italian has no desk in version 1" in bad.stdout
    assert "- expected: dept:general" in bad.stdout
    assert "+ actual:   dept:desk_it" in bad.stdout
    assert "PASS" not in bad.stdout


def test_explain_shows_tried_rules_and_the_failing_condition(tmp_path: Path) -> None:
    msg = tmp_path / "msg.json"
    msg.write_text(json.dumps({
        "message": {"body": "Is this in stock?", "vendor_id": "casa-verde", "channel": "chat"},
        "vendor": {"vendor_id": "casa-verde", "status": "suspended"},
    }))  # fmt: skip
    res = runner.invoke(app, ["rules", "explain", V1, str(msg)])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "tag-channel (line" in out
    assert "MATCHED, continue" in out
    assert "vip-buyer (line" in out
    assert "buyer.vip eq true is false (actual: absent)" in out
    assert "vendor-inactive (line" in out
    assert "MATCHED, terminal" in out
    assert "decision: queue dept:platform_desk, priority high" in out
    verbose = runner.invoke(app, ["rules", "explain", "-v", V1, str(msg)])
    assert "catch-all (line" in verbose.stdout
    assert "not reached" in verbose.stdout


def test_explain_accepts_a_cloudevent_with_a_context(tmp_path: Path) -> None:
    first = (EXAMPLES / "messages.jsonl").read_text().splitlines()[0]
    msg = tmp_path / "event.json"
    msg.write_text(first)
    res = runner.invoke(app, ["rules", "explain", V2, str(msg), "--context",
                              str(EXAMPLES / "context.yaml")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "decision: queue" in res.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"message": {"channel": "fax"}}')
    res = runner.invoke(app, ["rules", "explain", V2, str(bad)])
    assert res.exit_code == 1
    assert "channel" in res.stderr


def test_simulate_with_baseline() -> None:
    res = runner.invoke(app, ["simulate", "--rules", V2, "--baseline", V1, "--input",
                              str(EXAMPLES / "messages.jsonl"), "--context",
                              str(EXAMPLES / "context.yaml"), "--limit", "5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "200 records replayed through marketplace@2.0.0 (baseline marketplace@1.0.0)" in out
    assert "outcomes: opened 172, followup 28" in out
    assert "would change destination" in out
    assert "dept:general [catch-all] -> dept:desk_it [desk-it]" in out
    assert "more (--limit)" in out


def test_simulate_json_report() -> None:
    res = runner.invoke(app, ["simulate", "--rules", V1, "--input",
                              str(EXAMPLES / "messages.jsonl"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["total"] == 200
    assert sum(report["queues"].values()) == 200
    assert "changes" not in report


def test_simulate_needs_one_source() -> None:
    res = runner.invoke(app, ["simulate", "--rules", V1])
    assert res.exit_code == 2
    res = runner.invoke(app, ["simulate", "--rules", V1, "--topic", "channel.email"])
    assert res.exit_code == 2


def test_publish_refuses_an_invalid_ruleset_before_touching_kafka(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(ruleset_text("- id: a\n  then: {route: 'dept:nope'}\n"))
    res = runner.invoke(app, ["rules", "publish", str(bad), "--bootstrap", "127.0.0.1:1"])
    assert res.exit_code == 1
    assert "unknown department 'nope'" in res.stderr


def test_simulate_on_a_missing_input_or_a_directory_says_so_in_one_line(tmp_path: Path) -> None:
    for target, reason in [(tmp_path / "nope.jsonl", "No such file or directory"),
                           (tmp_path, "Is a directory")]:  # fmt: skip
        res = runner.invoke(app, ["simulate", "--rules", V1, "--input", str(target)])
        assert res.exit_code == 1
        assert res.exception is None or isinstance(res.exception, SystemExit)
        assert res.stderr == f"{target}: cannot read: {reason}\n"
        assert "Traceback" not in res.output


def test_errors_keep_square_brackets(tmp_path: Path) -> None:
    """User text is never read as rich markup: `[a-z0-9]` must not vanish from a message."""
    context = tmp_path / "ctx.yaml"
    context.write_text("vendors:\n  - {vendor_id: Bad Id}\n")
    messages = str(EXAMPLES / "messages.jsonl")
    res = runner.invoke(
        app, ["simulate", "--rules", V1, "--input", messages, "--context", str(context)]
    )
    assert res.exit_code == 1
    assert "^[a-z0-9][a-z0-9_-]{0,63}$" in res.stderr
    weird = tmp_path / "weird[red].yaml"
    weird.write_text(ruleset_text("- {id: all, then: {route: 'dept:general'}}\n")
                     .replace('version: "1"', 'version: "[bold]1[/bold]"'))  # fmt: skip
    ok = runner.invoke(app, ["rules", "validate", str(weird), "--sla-policies",
                             "urgent_sla,vip,standard"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert f"ok {weird}: test [bold]1[/bold], 1 rules" in ok.stdout
    missing = runner.invoke(app, ["rules", "test", V1, str(tmp_path / "[x].cases.yaml")])
    assert missing.exit_code == 1
    assert "[x].cases.yaml: cannot read: No such file or directory" in missing.stderr


def test_validate_reports_a_duplicate_key_with_both_lines(tmp_path: Path) -> None:
    bad = tmp_path / "dup.yaml"
    bad.write_text(ruleset_text("- id: a\n  then: {route: 'dept:general'}\n"
                                "  then: {route: 'dept:disputes'}\n"))  # fmt: skip
    res = runner.invoke(app, ["rules", "validate", str(bad), "--sla-policies", "standard"])
    assert res.exit_code == 1
    lines = bad.read_text().splitlines()
    first, second = (i for i, line in enumerate(lines, start=1) if "then:" in line)
    assert res.stderr.splitlines()[0] == (
        f"{bad}:{second}: rules[0].then: duplicate key at lines {first} and {second} "
        "(only one copy may be given)"
    )
