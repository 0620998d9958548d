"""The `router` command line: worker, gateway, deliver, schemas, rules, simulate, lag, tail,
vendors, disputes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from router.cli_settings import SettingsOpt, load_settings
from router.routing import RoutingPolicy
from streams.early_exit import exit_on_stop_signals

app = typer.Typer(
    name="router",
    help="Marketplace support-ticket router: run the engine, manage rules, inspect topics.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
schemas_app = typer.Typer(help="Record schemas.", no_args_is_help=True)
vendors_app = typer.Typer(help="Vendor queues and the vendor directory.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(vendors_app, name="vendors")


def _print_version(requested: bool) -> None:
    if requested:
        from importlib.metadata import version

        typer.echo(f"ticket-router {version('ticket-router')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="print the version and exit",
    )] = False,
) -> None:
    """Marketplace support-ticket router: run the engine, manage rules, inspect topics."""



@app.command()
def worker(
    settings_file: SettingsOpt = None,
    rules: Annotated[
        Path | None, typer.Option(help="Ruleset file; default: the built-in policy.")
    ] = None,
) -> None:
    """Run the routing engine until SIGTERM/SIGINT."""
    exit_on_stop_signals()  # a stop signal while it starts exits 0: nothing has started
    from streams.settings import RouterSettings
    from streams.worker import run_worker

    settings = load_settings(settings_file)
    assert isinstance(settings, RouterSettings)
    policy = None
    rules_path = rules or settings.rules_file
    if rules_path is not None:
        policy = _load_policy(rules_path, settings.sla_policies_file)
    run_worker(settings, policy)


@app.command()
def gateway(
    settings_file: SettingsOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address; default: gateway_host.")] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Listen port (0: any port); default: gateway_port."),
    ] = None,
) -> None:
    """Serve the channel gateway (HTTP -> channel topics) until SIGTERM/SIGINT."""
    exit_on_stop_signals()  # a stop signal while it starts exits 0: nothing has started
    from streams.gateway.server import run_gateway
    from streams.settings import RouterSettings

    settings = load_settings(settings_file)
    assert isinstance(settings, RouterSettings)
    if not settings.gateway_secrets and not settings.gateway_meta_app_secrets:
        typer.echo(
            "cannot start: no sources configured; set ROUTER_GATEWAY_SECRETS, e.g. "
            """'{"my-connector": ["<a secret of 16+ characters>"]}'"""
            ", or ROUTER_GATEWAY_META_APP_SECRETS for Meta webhooks",
            err=True,
        )
        raise typer.Exit(2)
    overrides = {
        k: v for k, v in (("gateway_host", host), ("gateway_port", port)) if v is not None
    }
    run_gateway(settings.model_copy(update=overrides))


def _load_policy(path: Path, sla_file: Path | None = None) -> RoutingPolicy:
    try:
        from router.engine_sla import SlaConfigError, engine_sla_policies
        from router.rules_policy import RulesetError, policy_from_file
    except ImportError as exc:  # pragma: no cover - rules engine not installed
        raise typer.BadParameter(f"rule engine unavailable: {exc}") from exc
    try:
        # Rulesets may only name the SLA policies this worker runs with.
        return policy_from_file(path, sla_policies=engine_sla_policies(sla_file))
    except (RulesetError, SlaConfigError) as exc:
        typer.echo(f"cannot start: {exc}", err=True)
        raise typer.Exit(1) from None


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Directory to write *.schema.json into.")],
) -> None:
    """Write a JSON Schema file for every record type."""
    from router.schema_export import export_schemas

    for path in export_schemas(directory):
        typer.echo(str(path))


@vendors_app.command("provision")
def vendors_provision(
    vendor_ids: Annotated[list[str], typer.Argument(help="Vendor ids, e.g. acme-tools")],
    settings_file: SettingsOpt = None,
    acls: Annotated[
        bool, typer.Option("--acls", help="Also grant each vendor its own queue, nothing else.")
    ] = False,
    principal: Annotated[
        str, typer.Option(help="Principal of a vendor; {vendor} is replaced by its id.")
    ] = "User:{vendor}",
    actions: Annotated[
        bool, typer.Option(help="Let vendors write tickets.actions (replies, resolves).")
    ] = True,
) -> None:
    """Create `queue.vendor.<id>` topics ahead of the first ticket (and, with --acls, the
    Kafka ACLs that keep each vendor to its own queue: see streams/kafka/acls.py)."""
    import re

    from schemas.message import VENDOR_ID_PATTERN
    from schemas.topics import QUEUE_VENDOR
    from streams.kafka.acls import AclError, create_acls, vendor_acls, vendor_principal
    from streams.kafka.topics import TopicManager
    from streams.settings import RouterSettings

    bad = [v for v in vendor_ids if not re.fullmatch(VENDOR_ID_PATTERN, v)]
    if bad:
        raise typer.BadParameter(f"invalid vendor id(s) {bad}: must match {VENDOR_ID_PATTERN}")
    if "{vendor}" not in principal:
        raise typer.BadParameter("--principal must contain {vendor} (one principal per vendor)")
    settings = load_settings(settings_file)
    assert isinstance(settings, RouterSettings)
    asyncio.run(TopicManager(settings).ensure([QUEUE_VENDOR.of(v) for v in vendor_ids]))
    for v in vendor_ids:
        typer.echo(settings.topic(QUEUE_VENDOR.of(v)))
        if not acls:
            continue
        bindings = vendor_acls(settings, v, vendor_principal(v, principal), actions=actions)
        try:
            asyncio.run(create_acls(settings, bindings))
        except AclError as exc:
            typer.echo(f"cannot grant ACLs for {v}: {exc}", err=True)
            raise typer.Exit(1) from None
        for binding in bindings:
            typer.echo(f"  {binding}")


@vendors_app.command("acls")
def vendors_acls(
    vendor_id: Annotated[str, typer.Argument(help="Vendor id")],
    settings_file: SettingsOpt = None,
    principal: Annotated[str, typer.Option(help="As for provision.")] = "User:{vendor}",
) -> None:
    """List the ACLs the broker holds for a vendor's principal."""
    from streams.kafka.acls import AclError, describe_acls, vendor_principal
    from streams.settings import RouterSettings

    settings = load_settings(settings_file)
    assert isinstance(settings, RouterSettings)
    try:
        found = asyncio.run(describe_acls(settings, vendor_principal(vendor_id, principal)))
    except AclError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for binding in found:
        typer.echo(str(binding))


@app.command()
def deliver(
    channel: Annotated[
        str, typer.Option(help="Which outbound topic to deliver: chat, social or email.")
    ],
    settings_file: SettingsOpt = None,
) -> None:
    """Deliver replies from outbound.<channel> until SIGTERM/SIGINT: chat and social to the
    Graph API, email over SMTP to the relay."""
    exit_on_stop_signals()  # a stop signal while it starts exits 0: nothing has started
    from streams.deliver import CHANNELS, run_deliver
    from streams.settings import RouterSettings

    if channel not in CHANNELS:
        typer.echo(f"--channel must be one of {', '.join(CHANNELS)}, not {channel!r}", err=True)
        raise typer.Exit(2)
    settings = load_settings(settings_file)
    assert isinstance(settings, RouterSettings)
    if channel == "email" and not settings.email_relay_host:
        typer.echo("cannot deliver email: set ROUTER_EMAIL_RELAY_HOST (the SMTP relay)", err=True)
        raise typer.Exit(2)
    run_deliver(settings, channel)


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="Logical topic, e.g. channel.dlq")],
    settings_file: SettingsOpt = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    limit: Annotated[int, typer.Option(help="Stop after N records (0: no limit).")] = 0,
    until_end: Annotated[
        bool,
        typer.Option(
            "--until-end",
            help="Stop at the end offsets the topic had when tail started (also when fewer "
            "than --limit records are there). Without it, tail follows the topic.",
        ),
    ] = False,
) -> None:
    """Print records of a topic as JSON lines."""
    from streams.settings import RouterSettings
    from streams.tools import tail_topic

    settings = load_settings(settings_file)
    assert isinstance(settings, RouterSettings)
    try:
        asyncio.run(
            tail_topic(
                settings, topic, from_beginning=from_beginning, limit=limit, until_end=until_end
            )
        )
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@app.command()
def report(
    settings_file: SettingsOpt = None,
    top: Annotated[
        int, typer.Option(min=1, max=1000, help="Vendors in the top and bottom lists.")
    ] = 10,
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML page with charts here."),
    ] = None,
) -> None:
    """Seller scores and support metrics: tables per queue, the top and bottom vendors."""
    from rich.console import Console

    from router.report import Report, html_page, terminal_tables
    from schemas.topics import METRICS_SUPPORT, VENDORS_SCORES
    from streams.settings import RouterSettings
    from streams.tools import topic_values

    settings = load_settings(settings_file)
    assert isinstance(settings, RouterSettings)

    async def read() -> tuple[list[bytes], list[bytes]]:
        scores = await topic_values(settings, VENDORS_SCORES.name)
        return scores, await topic_values(settings, METRICS_SUPPORT.name)

    try:
        scores, days = asyncio.run(read())
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    found = Report.from_values(scores, days)
    console = Console(width=200)
    for table in terminal_tables(found, top):
        console.print(table)
    if found.skipped:
        typer.echo(f"{found.skipped} unreadable records skipped", err=True)
    if html_file is not None:
        html_file.write_text(html_page(found, top), encoding="utf-8")
        typer.echo(f"wrote {html_file}")



@app.command()
def lag(
    settings_file: SettingsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON: one document per read")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="read again every interval")] = False,
    interval: Annotated[float, typer.Option(
        min=0.2, help="seconds between the two reads that give the rates")] = 2.0,
) -> None:
    """Lag of the engine's consumer groups per partition: offsets (as kafka-consumer-groups.sh
    prints them), how long the oldest unprocessed record has waited, the consume rate, and the
    time to catch up at the current rates (two reads INTERVAL seconds apart)."""
    from router.lag import render_table, totals
    from streams.settings import RouterSettings
    from streams.tools import engine_lag

    settings = load_settings(settings_file)
    assert isinstance(settings, RouterSettings)

    def show(lags: list[Any]) -> None:
        if as_json:
            doc = {"at": time.time(), "partitions": [
                {**p.as_dict(), "topic": settings.logical(p.topic)} for p in lags
            ], "totals": totals(lags)}  # fmt: skip
            typer.echo(orjson.dumps(doc).decode())
        else:
            if watch:
                typer.echo(time.strftime("%Y-%m-%d %H:%M:%S"))
            typer.echo(render_table(lags, settings.logical))

    async def run() -> None:
        before, _ = await engine_lag(settings)
        while True:
            await asyncio.sleep(interval)  # wait-ok: the window the rates are measured over
            now, lags = await engine_lag(settings, before)
            show(lags)
            if not watch:
                return
            before = now

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def _mount_optional() -> None:
    from router.cli_vendors import mount as mount_vendor_commands

    mount_vendor_commands(vendors_app)  # vendors publish|remove|list
    from router.cli_disputes import disputes_app

    app.add_typer(disputes_app, name="disputes")  # disputes validate|test|show|list
    from router.cli_email import connect_app, email_app

    app.add_typer(email_app, name="email")  # email parse
    app.add_typer(connect_app, name="connect")  # connect email
    try:
        from router.cli_rules import rules_app, simulate
    except ImportError:  # pragma: no cover - the rule engine ships separately
        return
    app.add_typer(rules_app, name="rules")
    app.command("simulate")(simulate)


_mount_optional()


@app.command()
def demo(
    seconds: Annotated[float, typer.Option(help="How long to send traffic.")] = 30,
    rate: Annotated[int, typer.Option(help="Inbound messages per second.")] = 100,
) -> None:
    """Broker + engine + marketplace traffic, then a verified summary (exit 0 iff lost: 0)."""
    from streams.demo import run_demo

    raise typer.Exit(run_demo(seconds, rate))


def main() -> None:
    app()
