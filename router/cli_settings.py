"""The `--settings FILE` option every `router` command shares, and the settings it loads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from streams.settings import RouterSettings

SettingsOpt = Annotated[
    Path | None,
    typer.Option("--settings", help="YAML/JSON settings file (environment overrides it)."),
]


def load_settings(path: Path | None) -> RouterSettings:
    """The engine settings: environment over the file (`--settings` or ROUTER_SETTINGS_FILE)."""
    if path is not None:
        if not path.is_file():
            raise typer.BadParameter(f"{path} does not exist", param_hint="--settings")
        os.environ["ROUTER_SETTINGS_FILE"] = str(path)
    from pydantic import ValidationError

    from streams.settings import RouterSettings  # imported late: `router --help` stays fast

    try:
        return RouterSettings()
    except ValidationError as exc:  # from the environment or the file; one line per field
        for e in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in e["loc"]) or "settings"
            typer.echo(f"invalid settings: {where}: {e['msg']}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:  # the settings file (streams.settings.SettingsFileError)
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
