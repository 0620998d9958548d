"""deploy/observability/: the alert rules pass `promtool test rules` (fired by synthetic series,
held back where they must not fire), every alert has its runbook, and the dashboard is a
well-formed Grafana document. That each series they name is really exported is checked on live
scrapes: tests/integration/test_observability.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
SERIES = re.compile(r"\b((?:router|process)_[a-z_]+)\b")
PROMTOOL = shutil.which("promtool")


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((OBSERVABILITY / "dashboard.json").read_bytes())
    return doc


def named_series() -> set[str]:
    """Every series an alert or a dashboard panel reads."""
    exprs = [rule["expr"] for rule in alert_rules()]
    exprs += [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]
    return {name for expr in exprs for name in SERIES.findall(expr)}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
def test_promtool_checks_and_tests_the_rules() -> None:
    assert PROMTOOL is not None
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run([PROMTOOL, *args], cwd=OBSERVABILITY, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_and_has_a_runbook_section() -> None:
    tests = yaml.safe_load((OBSERVABILITY / "alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"]
             if case.get("exp_alerts")}  # fmt: skip
    runbooks = (OBSERVABILITY / "runbooks.md").read_text()
    sections = set(re.findall(r"^## (\w+)$", runbooks, re.M))
    names = {rule["alert"] for rule in alert_rules()}
    assert names == fired == sections
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert rule["labels"]["severity"] in ("page", "ticket")


def test_the_dashboard_is_well_formed() -> None:
    doc = dashboard()
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in doc["templating"]["list"]}
    for panel in doc["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= variables, (panel["title"], used - variables)
            assert SERIES.search(target["expr"]), target["expr"]
    assert {"job", "gateway_job", "datasource"} <= variables


def test_alerts_and_panels_name_only_bounded_label_sets() -> None:
    # no alert or panel groups by an id: the engine exports none (README "Metrics")
    exprs = [rule["expr"] for rule in alert_rules()]
    exprs += [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]
    for expr in exprs:
        assert not re.search(r"\b(vendor|ticket|buyer)(_id)?\b", expr), expr
    assert named_series()  # the integration test holds these to live scrapes
