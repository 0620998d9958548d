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
    from streams.settings import RouterSettings  # imported late: `router --help` stays fast

    return RouterSettings()
