"""`router email parse FILE...`: what the email intake would publish for each raw message, or
why it would refuse it; no Kafka needed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from router.cli_settings import SettingsOpt, load_settings
from router.email.config import EmailConfig
from streams.early_exit import exit_on_stop_signals

if TYPE_CHECKING:
    from streams.settings import RouterSettings

email_app = typer.Typer(help="The email channel.", no_args_is_help=True)


def email_config(settings: RouterSettings) -> EmailConfig:
    """The parser's configuration from the one settings object."""
    return EmailConfig(
        max_bytes=settings.email_max_bytes,
        max_depth=settings.email_max_mime_depth,
        max_parts=settings.email_max_parts,
        keep_raw_bytes=settings.email_keep_raw_bytes,
        max_record_bytes=settings.max_record_bytes,
        support_addresses=tuple(settings.email_support_addresses),
        vendor_addresses=dict(settings.email_vendor_addresses),
        order_pattern=settings.email_order_pattern,
        reply_languages=tuple(settings.email_reply_languages),
    )


def describe(path: str, outcome: Any) -> dict[str, Any]:
    """One outcome as data: `record`, `refused`, `auto_reply` or `bounce`."""
    from router.email.parse import Classified, Parsed

    if isinstance(outcome, Parsed):
        return {"file": path, "outcome": "record", "record": orjson.loads(outcome.value)}
    if isinstance(outcome, Classified):
        c = outcome.classification
        return {
            "file": path, "outcome": c.kind.value, "why": c.why,
            "message_id": outcome.message_id, "sender": outcome.sender,
            "original_message_id": c.original_message_id, "action": c.action,
        }  # fmt: skip
    return {"file": path, "outcome": "refused", "reason": outcome.reason.value,
            "error": outcome.error}  # fmt: skip


def _line(doc: dict[str, Any]) -> str:
    kind = doc["outcome"]
    if kind == "record":
        data = doc["record"]["data"]
        extras = [f"{k}={data[k]}" for k in ("vendor_id", "order_id") if data.get(k)]
        attachments = len(data.get("attachments", []))
        return (
            f"{doc['file']}: record {data['message_id']} thread={data['thread_ref']} "
            f"from={data['sender'].get('address')} attachments={attachments} "
            f"body={len(data['body'])} chars {' '.join(extras)}".rstrip()
        )
    if kind == "refused":
        return f"{doc['file']}: refused {doc['reason']}: {doc['error']}"
    bounced = f" of {doc['original_message_id']}" if doc.get("original_message_id") else ""
    return f"{doc['file']}: {kind}{bounced} ({doc['why']})"


@email_app.command("parse")
def parse(
    files: Annotated[list[Path], typer.Argument(help="Raw RFC 5322 messages (.eml, .box).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
    settings_file: SettingsOpt = None,
) -> None:
    """Print, per file, the inbound record the email intake would publish, or why it would
    refuse the message (a dead-letter reason), or that it is an auto-reply or a bounce.
    Exit 1 when a file cannot be read."""
    from router.email.parse import parse_email
    from schemas.dead_letter import SourcePosition

    config = email_config(load_settings(settings_file))
    failed = False
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            typer.echo(f"{path}: cannot read: {exc.strerror or exc}", err=True)
            failed = True
            continue
        source = SourcePosition(topic=f"file:{path}", partition=0, offset=0)
        outcome = parse_email(raw, config, datetime.now(UTC), source)
        doc = describe(str(path), outcome)
        typer.echo(orjson.dumps(doc).decode() if as_json else _line(doc))
    if failed:
        raise typer.Exit(1)


connect_app = typer.Typer(help="Channel connectors.", no_args_is_help=True)


@connect_app.command("email")
def connect_email(
    imap: Annotated[
        bool | None,
        typer.Option("--imap/--no-imap", help="Default: on when email_imap_host is set."),
    ] = None,
    smtp: Annotated[
        bool | None,
        typer.Option("--smtp/--no-smtp", help="Default: on when email_smtp_port is not -1."),
    ] = None,
    smtp_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Listen port (0: any); default: email_smtp_port."),
    ] = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Take in email until SIGTERM/SIGINT: an IMAP mailbox (IDLE, else polling) and/or SMTP
    delivery, onto channel.email. A message is flagged (IMAP) or answered 250 (SMTP) only once
    Kafka acknowledged its record."""
    exit_on_stop_signals()  # a stop signal while it starts exits 0: nothing has started
    from streams.email.connect import run_connect_email

    settings = load_settings(settings_file)
    if smtp_port is not None:
        settings = settings.model_copy(update={"email_smtp_port": smtp_port})
    use_imap = bool(settings.email_imap_host) if imap is None else imap
    use_smtp = settings.email_smtp_port >= 0 if smtp is None else smtp
    problems = []
    if not (use_imap or use_smtp):
        problems.append("nothing to do: set ROUTER_EMAIL_IMAP_HOST or ROUTER_EMAIL_SMTP_PORT")
    if use_imap and not (settings.email_imap_host and settings.email_imap_user):
        problems.append("IMAP needs ROUTER_EMAIL_IMAP_HOST and ROUTER_EMAIL_IMAP_USER")
    if use_smtp and settings.email_smtp_port < 0:
        problems.append("SMTP needs ROUTER_EMAIL_SMTP_PORT (or --smtp-port)")
    if problems:
        typer.echo("cannot start: " + "; ".join(problems), err=True)
        raise typer.Exit(2)
    run_connect_email(settings, email_config(settings), imap=use_imap, smtp=use_smtp)


@email_app.command("import")
def import_mail(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Maildir folders, mbox files, .eml files or folders of them."),
    ],
    settings_file: SettingsOpt = None,
) -> None:
    """Backfill channel.email from stored mail, with a progress bar: each message becomes a
    record, a dead letter with its reason, or (auto-replies, bounces) nothing. Importing the
    same mail again adds nothing (event ids derive from Message-IDs). Exit 1 when Kafka stops
    acknowledging; 2 when a path cannot be read."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from streams.email.backfill import ImportStopped, import_mail, mail_sources
    from streams.gateway.sink import ChannelSink

    settings = load_settings(settings_file)
    config = email_config(settings)
    try:
        sources = mail_sources(paths, config.max_bytes)
        total = sum(len(s) for s in sources)
    except (OSError, ValueError) as exc:
        typer.echo(f"cannot import: {exc}", err=True)
        raise typer.Exit(2) from None

    async def run(advance: Any) -> Any:
        sink = ChannelSink(settings, settings.email_ack_timeout_s, client_id="router-email-import")
        await sink.start()
        try:
            return await import_mail(sources, config, sink, advance)
        finally:
            await sink.stop()

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("importing", total=total)
        try:
            counts = asyncio.run(run(lambda n: progress.advance(task, n)))
        except ImportStopped as exc:
            typer.echo(f"import stopped: {exc}", err=True)
            raise typer.Exit(1) from None
    summary = ", ".join(f"{counts[k]} {k}" for k in ("record", "refused", "auto_reply", "bounce"))
    typer.echo(f"imported {sum(counts.values())} messages: {summary}")
