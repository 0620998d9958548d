"""`router disputes validate|test|show|list|policy publish|policy show`: dispute policies,
their golden cases, the disputes on `disputes.events`, and the policy workers follow on
`disputes.policy`.

Exit codes: 0 ok, 1 invalid input or failing cases (or no such dispute, no published policy;
nothing is published then), 2 usage errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from router.cli_settings import SettingsOpt
from router.disputes.policy import DisputePolicy, DisputePolicyError, load_dispute_policy
from schemas.dispute import DisputeState

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
disputes_app = typer.Typer(
    help="Disputes: policies, golden cases, and the disputes on disputes.events.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    help="The dispute policy every worker follows (the compacted disputes.policy topic).",
    no_args_is_help=True,
)
disputes_app.add_typer(policy_app, name="policy")

SlaFileOption = Annotated[
    Path | None,
    typer.Option(
        "--sla-config",
        help="SLA policy file whose calendars the policy names (default: "
        "ROUTER_SLA_POLICIES_FILE, else the built-in policies).",
    ),
]


def _fail(problems: list[str]) -> typer.Exit:
    for problem in problems:
        err.print(f"[red]error[/] {escape(problem)}")
    return typer.Exit(1)


def calendars_of(sla_config: Path | None) -> Any:
    """The calendars of the SLA policy file the engine runs with."""
    from router.sla.policy import DEFAULT_POLICY_FILE, SlaPolicyError, load_sla_config

    path = sla_config
    if path is None:
        import os

        configured = os.environ.get("ROUTER_SLA_POLICIES_FILE")
        path = Path(configured) if configured else DEFAULT_POLICY_FILE
    try:
        return load_sla_config(path).calendars
    except SlaPolicyError as exc:
        raise _fail(exc.problems) from None


def load_policy(path: Path, sla_config: Path | None) -> DisputePolicy:
    try:
        return load_dispute_policy(path, calendars_of(sla_config))
    except DisputePolicyError as exc:
        raise _fail(exc.problems) from None


@disputes_app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Dispute policy file (YAML).")],
    sla_config: SlaFileOption = None,
) -> None:
    """Check a dispute policy: `file:line: field: message` for each problem."""
    policy = load_policy(file, sla_config)
    console.print(f"[green]ok[/] {escape(str(file))}: currency {policy.currency}, "
                  f"{len(policy.protection)} buyer-protection rules")  # fmt: skip


@disputes_app.command("test")
def golden_test(
    cases: Annotated[list[Path], typer.Argument(help="Golden case files (*.cases.yaml).")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print failures only.")] = False,
    sla_config: SlaFileOption = None,
) -> None:
    """Run scripted disputes against the policy each case file names; each difference shown."""
    from router.cli_vendors import load_profiles
    from router.disputes.golden import CasesError, parse_cases, run_cases
    from rules.source import LoadError, parse_text

    total = failed = 0
    for path in cases:
        try:
            src = parse_text(path.read_text(encoding="utf-8"), str(path))
            spec = parse_cases(src)
        except OSError as exc:
            raise _fail([f"{path}: cannot read: {exc.strerror or exc}"]) from None
        except LoadError as exc:
            raise _fail([str(exc)]) from None
        except CasesError as exc:
            raise _fail(exc.problems) from None
        if spec.policy is None:
            raise _fail([f"{path}: `policy` names no dispute policy file"])
        policy = load_policy(path.parent / spec.policy, sla_config)
        vendors = {}
        if spec.vendors is not None:
            profiles, problems = load_profiles(path.parent / spec.vendors)
            if problems:
                raise _fail(problems)
            vendors = {p.vendor_id: p for p in profiles}
        for result in run_cases(src, spec, policy, vendors):
            total += 1
            failed += not result.passed
            if result.passed and quiet:
                continue
            mark = "[green]pass[/]" if result.passed else "[red]FAIL[/]"
            console.print(f"{mark} {escape(result.name)}")
            for failure in result.failures:
                console.print(f"  {escape(failure)}")
    console.print(f"[{'red' if failed else 'green'}]{total - failed} passed, {failed} failed[/]")
    if failed:
        raise typer.Exit(1)


def _read_disputes(settings_file: Path | None) -> Any:
    import asyncio

    from router.cli_settings import load_settings
    from router.disputes.views import fold
    from schemas.topics import DISPUTES_EVENTS
    from streams.logs import configure_logging
    from streams.tools import topic_values

    configure_logging("WARNING")  # library log lines on stderr, never mixed with the output
    settings = load_settings(settings_file)
    views, skipped = fold(asyncio.run(topic_values(settings, DISPUTES_EVENTS.name)))
    if skipped:
        err.print(f"[yellow]{skipped} records on {DISPUTES_EVENTS.name} are not dispute events[/]")
    return views


@disputes_app.command()
def show(
    order: Annotated[str, typer.Argument(help="Order id.")],
    settings_file: SettingsOpt = None,
) -> None:
    """A dispute from disputes.events: state, parties, offer, verdict, deadlines, timeline."""
    from router.disputes.views import show_lines

    view = _read_disputes(settings_file).get(order)
    if view is None:
        err.print(f"no dispute on order {escape(order)!r}")
        raise typer.Exit(1)
    for line in show_lines(view):
        console.print(line, markup=False)


@disputes_app.command("list")
def list_disputes(
    state: Annotated[
        DisputeState | None, typer.Option("--state", help="Only disputes in this state.")
    ] = None,
    vendor: Annotated[str | None, typer.Option("--vendor", help="Only this seller's.")] = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Disputes from disputes.events, oldest first: order, state, seller, buyer, reason,
    amount, next deadline (tab-separated)."""
    from router.disputes.views import list_row, select

    for view in select(_read_disputes(settings_file), state, vendor):
        typer.echo(list_row(view))


@policy_app.command("publish")
def publish_policy(
    file: Annotated[Path, typer.Argument(help="Dispute policy file (YAML).")],
    sla_config: SlaFileOption = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Validate, then write the policy to disputes.policy: every worker takes it (its
    windows apply to the deadlines set from then on). Invalid: the problems, nothing written."""
    import asyncio
    from datetime import UTC, datetime

    from router.cli_settings import load_settings
    from router.disputes.policy import published_value
    from schemas.dispute import DISPUTE_POLICY_KEY
    from schemas.topics import DISPUTES_POLICY
    from streams.kafka.compacted import publish
    from streams.logs import configure_logging

    policy = load_policy(file, sla_config)
    text = file.read_text(encoding="utf-8")  # load_policy read it: a read error has exited
    configure_logging("WARNING")
    settings = load_settings(settings_file)
    value = published_value(text, file.name, datetime.now(UTC))
    (done,) = asyncio.run(
        publish(settings, DISPUTES_POLICY.name, [(DISPUTE_POLICY_KEY.encode(), value)])
    )
    console.print(
        f"published {file} (fingerprint {policy.fingerprint}) to {done.topic} "
        f"(partition {done.partition}, offset {done.offset})",
        markup=False,
    )


@policy_app.command("show")
def show_policy(
    sla_config: SlaFileOption = None,
    settings_file: SettingsOpt = None,
) -> None:
    """The policy in force on disputes.policy (the newest record that validates against the
    SLA calendars) and any newer record workers refused; its text."""
    import asyncio
    from datetime import UTC, datetime

    from router.cli_settings import load_settings
    from router.disputes.policy import newest_valid, read_published
    from schemas.topics import DISPUTES_POLICY
    from streams.kafka.compacted import CompactedReader
    from streams.logs import configure_logging

    configure_logging("WARNING")
    settings = load_settings(settings_file)
    reader = CompactedReader(settings, DISPUTES_POLICY.name, "disputes-policy-show")
    try:
        records = asyncio.run(reader.read_to_end())
    except LookupError:
        records = []
    positions = {f"{reader.topic}[{r.partition}]@{r.offset}": r for r in records}
    choice = newest_valid([(where, r.value) for where, r in positions.items()],
                          calendars_of(sla_config))  # fmt: skip
    for where, problems in choice.refused:
        err.print(f"[yellow]refused[/] {escape(where)}:")
        for problem in problems:
            err.print(f"  {escape(problem)}")
    if choice.policy is None or choice.where is None:
        err.print(f"no valid policy published on {escape(reader.topic)}: workers run with "
                  "their disputes_policy_file (or the built-in policy)")  # fmt: skip
        raise typer.Exit(1)
    record = positions[choice.where]
    assert record.value is not None  # newest_valid skips tombstones
    published = read_published(record.value, choice.where)
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat()
    console.print(f"{choice.where}: {published.file}, published {at}, "
                  f"fingerprint {choice.policy.fingerprint}", markup=False)  # fmt: skip
    typer.echo(published.text.rstrip("\n"))
