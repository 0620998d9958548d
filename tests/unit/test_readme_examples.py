"""Every `router` example in the README runs as written: the files it names ship with the
repo, the command line parses, and the examples that need no broker run in-process (the
others have their files checked by the CLI's own validators)."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException
from typer.testing import CliRunner

from router.cli import app
from router.cli_vendors import load_profiles
from tests.harness import REPO

README = REPO / "README.md"
FILE_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl")
# need no broker: run them as written
RUN_OFFLINE = {("rules", "validate"), ("rules", "test"), ("rules", "explain"), ("simulate",),
               ("disputes", "validate"), ("disputes", "test")}  # fmt: skip


def readme_commands() -> list[list[str]]:
    """`router ...` command lines of the README's sh blocks, continuations joined."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["router"]:
                commands.append(words[1:])
    return commands


def file_args(words: list[str]) -> list[str]:
    return [w for w in words if not w.startswith("-") and w.endswith(FILE_SUFFIXES)]


def parse(words: list[str]) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Parse without running: the sub-command path and its parameters (typer's click raises
    a usage error, a TyperException)."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("router", list(words))
    path: list[str] = []
    while isinstance(command, TyperGroup):
        rest = [*ctx._protected_args, *ctx.args]  # what the group left for its sub-command
        name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None
        assert name is not None
        path.append(name)
        command, ctx = sub, sub.make_context(name, args, parent=ctx)
    return tuple(path), ctx.params


COMMANDS = readme_commands()
runner = CliRunner()


def test_the_readme_has_the_examples_this_test_reads() -> None:
    paths = {parse(words)[0] for words in COMMANDS}
    assert paths >= RUN_OFFLINE
    assert ("vendors", "publish") in paths
    assert ("disputes", "policy", "publish") in paths
    assert sum(bool(file_args(w)) for w in COMMANDS) >= 7


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w)[:60] for w in COMMANDS])
def test_readme_example(words: list[str]) -> None:
    path, params = parse(words)
    for name in file_args(words):
        assert (REPO / name).is_file(), f"`router {' '.join(words)}` names {name}: not shipped"
    if path in RUN_OFFLINE:
        result = runner.invoke(app, words, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return
    # needs a broker: check its files with the validators the command runs first
    checked: set[str] = set()
    if path in (("rules", "publish"), ("worker",)):
        ruleset = params["file"] if path == ("rules", "publish") else params["rules"]
        if ruleset is not None:
            result = runner.invoke(app, ["rules", "validate", str(ruleset)])
            assert result.exit_code == 0, result.output
            checked.add(str(ruleset))
    if path == ("disputes", "policy", "publish"):
        result = runner.invoke(app, ["disputes", "validate", str(params["file"])])
        assert result.exit_code == 0, result.output
        checked.add(str(params["file"]))
    if path == ("vendors", "publish"):
        profiles, problems = load_profiles(REPO / params["file"])
        assert problems == []
        assert profiles
        checked.add(str(params["file"]))
    assert set(file_args(words)) <= checked, f"no validator for the files of {path}"


def test_parse_rejects_what_the_cli_rejects() -> None:
    """The parse check above can fail."""
    with pytest.raises(TyperException):
        parse(["tail", "channel.dlq", "--no-such-option"])
    with pytest.raises(TyperException):
        parse(["rules", "no-such-command"])
