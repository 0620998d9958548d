"""The optional native build (router/native.py): never stale, in use where required, and the
pure-Python sources it shadows still produce the same transcript."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from router import native, native_build

ROOT = Path(__file__).resolve().parents[2]


def test_no_extension_shadows_an_edited_source() -> None:
    stale = [path for path, state in native.status().items() if state == "stale"]
    assert not stale, f"compiled before their last edit: {stale}; run `make native`"


@pytest.mark.skipif(
    os.environ.get("ROUTER_REQUIRE_NATIVE") != "1"
    or not native_build.compiler_available()
    or native.sources_requested(),
    reason="native build not required here (make test sets ROUTER_REQUIRE_NATIVE=1)",
)
def test_every_listed_module_runs_compiled_under_make_test() -> None:
    for path in native.MODULES:
        importlib.import_module(native.module_name(path))
    assert sorted(native.compiled_modules()) == sorted(map(native.module_name, native.MODULES))


class _Pair:
    __slots__ = ("items", "name")

    def __init__(self, name: str, items: list[int]) -> None:
        self.name, self.items = name, items


def test_slot_copier_copies_every_field_onto_a_new_instance() -> None:
    copy = native.slot_copier(_Pair, ("name", "items"), copy=("items",))
    pair = _Pair("a", [1, 2])
    twin = copy(pair)
    assert (type(twin), twin.name, twin.items) == (_Pair, "a", [1, 2])
    assert twin.items is not pair.items  # the `copy` fields are copied, the rest shared
    with pytest.raises(ValueError, match="not a field name"):
        native.slot_copier(_Pair, ("name", "bad name"))


def _run_on_sources(script: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`python -c script` with ROUTER_NATIVE=off: the sources run even where a build is present."""
    env = {**os.environ, "ROUTER_NATIVE": "off", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout_s, check=False,
    )


def test_pure_python_sources_give_the_pinned_transcript() -> None:
    # ROUTER_NATIVE=off imports the sources even where extensions are built: the pinned digest
    # (tests/unit/sla/test_sla_transcript.py) then holds for both builds in one CI run.
    script = (
        "import router.sla.transitions as t, router.native as n;"
        "from tests.unit.sla.test_sla_transcript import DIGEST;"
        "from tests.unit.sla.transcript import digest, transcript;"
        "assert not n.native_build_of(t.Transition), t.__file__;"
        "print(digest(transcript()) == DIGEST)"
    )
    result = _run_on_sources(script, timeout_s=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_pure_python_sources_pass_the_rules_unit_tests() -> None:
    # The rule evaluator's compiled modules, run as sources: the compiled-vs-reference
    # property tests and the operator tests hold for both builds in one CI run.
    script = (
        "import sys, pytest, rules.compile as c, router.native as n;"
        "assert not n.native_build_of(c.CompiledRuleset), c.__file__;"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/unit/rules']))"
    )
    result = _run_on_sources(script, timeout_s=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert " passed" in result.stdout


def test_status_names_an_extension_built_from_an_older_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native, "extensions_of", lambda path: [tmp_path / "built.so"])
    manifest = tmp_path / "manifest.json"
    digests = {path: native.digest(path) for path in native.MODULES}
    manifest.write_text(json.dumps({"modules": digests}))
    monkeypatch.setattr(native, "MANIFEST", manifest)
    assert set(native.status().values()) == {"compiled"}
    edited = native.MODULES[0]
    manifest.write_text(json.dumps({"modules": {**digests, edited: "0" * 64}}))
    assert native.status()[edited] == "stale"
    assert native_build.main(["status"]) == 1  # `python -m router.native_build status`: 1
