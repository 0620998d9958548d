"""`router vendors publish|remove|list`: vendor profiles on the compacted `directory.vendors`.

Mounted on the main CLI's `vendors` group (next to `vendors provision`). Workers keep the
directory in memory (`streams/stages/vendor_directory.py`) and pick changes up live.
Exit codes: 0 ok, 1 invalid profiles (nothing is published then), 2 usage errors.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from router.cli_settings import SettingsOpt, load_settings
from schemas.vendor import VendorProfile

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

def _settings(path: Path | None) -> Any:
    from streams.logs import configure_logging

    configure_logging("WARNING")  # library log lines on stderr, never mixed with the output
    return load_settings(path)


def load_profiles(path: Path) -> tuple[list[VendorProfile], list[str]]:
    """Profiles from a YAML/JSON list (or a mapping with a `vendors` list, like the
    `--context` files of `router simulate`), and every problem found."""
    from rules.source import LoadError, parse_text, printable

    try:
        src = parse_text(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [], [f"{path}: cannot read: {reason}"]
    except LoadError as exc:
        return [], [str(exc)]
    data = src.data
    base: tuple[str, ...] = ()
    if isinstance(data, dict) and "vendors" in data:
        data, base = data["vendors"], ("vendors",)
    if not isinstance(data, list):
        return [], [f"{path}: expected a list of vendor profiles (or a `vendors:` list)"]
    profiles: list[VendorProfile] = []
    problems: list[str] = []
    seen: set[str] = set()
    first_line: dict[str, int | None] = {}
    for i, item in enumerate(data):
        label = f"vendors[{i}]"
        vendor_id = item.get("vendor_id") if isinstance(item, dict) else None
        if isinstance(vendor_id, str):
            label += f" ({printable(vendor_id[:64])})"
        try:
            profile = VendorProfile.model_validate(item)
        except ValidationError as exc:
            for e in exc.errors():
                where = printable(".".join(str(p) for p in e["loc"])) or "profile"
                at = src.line((*base, i, *e["loc"])) or "?"
                problems.append(f"{path}:{at}: {label}: {where}: {printable(e['msg'])}")
            continue
        line = src.line((*base, i))
        if profile.vendor_id in seen:
            problems.append(f"{path}:{line or '?'}: {label}: vendor {profile.vendor_id!r} "
                            f"listed twice (first at line {first_line[profile.vendor_id]})")
            continue
        seen.add(profile.vendor_id)
        first_line[profile.vendor_id] = line
        profiles.append(profile)
    return profiles, problems


def publish(
    file: Annotated[Path, typer.Argument(help="YAML/JSON list of vendor profiles.")],
    settings_file: SettingsOpt = None,
) -> None:
    """Validate every profile, then write them to `directory.vendors` (workers reload live)."""
    from schemas.topics import DIRECTORY_VENDORS
    from streams.stages.vendor_directory import publish_profiles

    profiles, problems = load_profiles(file)
    if problems:
        for problem in problems:
            err.print(problem, style="red", markup=False)
        err.print(f"[red]{len(problems)} problem{'s' if len(problems) != 1 else ''}[/red]")
        raise typer.Exit(1)
    settings = _settings(settings_file)
    count = asyncio.run(publish_profiles(settings, profiles))
    console.print(
        f"published {count} vendor profiles to {settings.topic(DIRECTORY_VENDORS.name)}",
        markup=False,
    )


def remove(
    vendor_ids: Annotated[list[str], typer.Argument(help="Vendor ids to forget.")],
    settings_file: SettingsOpt = None,
) -> None:
    """Write tombstones: workers forget these vendors (their tickets use rule fallbacks)."""
    from streams.stages.vendor_directory import remove_profiles

    settings = _settings(settings_file)
    count = asyncio.run(remove_profiles(settings, vendor_ids))
    console.print(f"removed {count} vendor profiles")


def list_vendors(
    settings_file: SettingsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON profile per line.")] = False,
) -> None:
    """The vendor directory as workers see it (newest valid profile per vendor)."""
    from streams.stages.vendor_directory import read_directory

    settings = _settings(settings_file)
    try:
        profiles = asyncio.run(read_directory(settings))
    except LookupError as exc:
        err.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        for vendor_id in sorted(profiles):
            typer.echo(orjson.dumps(profiles[vendor_id].model_dump(mode="json")).decode())
        return
    table = Table("vendor", "name", "status", "tier", "timezone", "calendar", "response h")
    for vendor_id in sorted(profiles):
        p = profiles[vendor_id]
        table.add_row(*map(escape, (
            vendor_id, p.name or "", p.status.value, p.tier.value, p.timezone, p.calendar or "",
            "" if p.response_hours is None else f"{p.response_hours:g}",
        )))  # fmt: skip
    console.print(table)


def mount(vendors_app: typer.Typer) -> None:
    """Add these commands to the main CLI's `vendors` group."""
    vendors_app.command("publish")(publish)
    vendors_app.command("remove")(remove)
    vendors_app.command("list")(list_vendors)
