"""`router rules validate|test|explain|publish|history` and `router simulate`.

Mounted by the main CLI: `app.add_typer(rules_app, name="rules")` and
`app.command("simulate")(simulate)`. Exit codes: 0 ok, 1 problems / failed cases /
refused publish, 2 usage errors (typer's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from router.backtest import Backtest, Outcome, SimulationReport, outcome_dict, report_dict
from router.cli_settings import load_settings
from router.stages.contract import InRecord
from rules import Problem, Ruleset, compile_ruleset, parse_ruleset_file
from rules.explain import explain as explain_input
from rules.explain import render_explanation
from rules.golden import format_outcome, run_cases
from rules.inputs import Context, context_from_data, input_from_mapping
from rules.source import LoadError, parse_text
from schemas.topics import ROUTING_RULES

rules_app = typer.Typer(
    name="rules", help="Validate, test, explain and publish routing rulesets.", no_args_is_help=True
)
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

PROGRESS_MIN_BYTES = 1 << 20  # show a progress bar for inputs of 1 MiB or more

SlaOption = Annotated[
    str | None,
    typer.Option(
        "--sla-policies",
        help="Comma-separated SLA policies the engine knows (default: those of the SLA file).",
    ),
]
SlaFileOption = Annotated[
    Path | None,
    typer.Option(
        "--sla-config",
        help="SLA policy file the engine runs with (default: ROUTER_SLA_POLICIES_FILE, "
        "else the built-in policies). Rulesets may only name its policies.",
    ),
]
Bootstrap = Annotated[
    str | None,
    typer.Option(help="Kafka bootstrap servers (default: the engine settings)."),
]
TopicOption = Annotated[
    str | None,
    typer.Option(help="Rules topic (default: routing.rules with the settings' prefix)."),
]
ContextOption = Annotated[
    Path | None,
    typer.Option("--context", help="YAML/JSON with vendors, buyers and orders tables."),
]


def _sla(value: str | None, config: Path | None = None) -> list[str]:
    """The SLA policies a ruleset may name: `--sla-policies`, else the engine's SLA file."""
    if value:
        return [s.strip() for s in value.split(",") if s.strip()]
    from router.engine_sla import SlaConfigError, engine_sla_policies

    if config is None:
        config = load_settings(None).sla_policies_file
    try:
        return list(engine_sla_policies(config))
    except SlaConfigError as exc:
        err.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None


def _error(text: str) -> None:
    """User text on stderr, in red, never read as markup (`[a-z]` would vanish)."""
    err.print(text, style="red", markup=False)


def _reason(exc: OSError | UnicodeDecodeError) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        err.print(str(p), style="red", markup=False)
    err.print(f"[red]{len(problems)} problem{'s' if len(problems) != 1 else ''}[/red]")


def _load(path: Path, sla: str | None = None, sla_config: Path | None = None) -> Ruleset:
    parsed = parse_ruleset_file(path, sla_policies=_sla(sla, sla_config))
    if isinstance(parsed, list):
        _print_problems(parsed)
        raise typer.Exit(1)
    return parsed


def _read_data(path: Path) -> Any:
    try:
        return parse_text(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        _error(f"{path}: cannot read: {_reason(exc)}")
        raise typer.Exit(1) from None
    except LoadError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None


def _context(path: Path | None) -> Context | None:
    if path is None:
        return None
    try:
        return context_from_data(_read_data(path).data)
    except ValueError as exc:
        _error(f"{path}: {exc}")
        raise typer.Exit(1) from None


@rules_app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Ruleset files (YAML or JSON).")],
    sla_policies: SlaOption = None,
    sla_config: SlaFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Problems as JSON lines.")] = False,
) -> None:
    """Report every problem (file, line, rule id, message); exit 1 if there is any."""
    failed = False
    engine_sla = _sla(sla_policies, sla_config)
    for path in files:
        parsed = parse_ruleset_file(path, sla_policies=engine_sla)
        if isinstance(parsed, list):
            failed = True
            if as_json:
                for p in parsed:
                    line = {"file": p.file, "line": p.line, "rule": p.rule_id, "msg": p.message}
                    typer.echo(orjson.dumps(line).decode())
            else:
                _print_problems(parsed)
            continue
        compiled = compile_ruleset(parsed)
        if not as_json:
            console.print(
                f"[green]ok[/green] {escape(str(path))}: {escape(parsed.name)} "
                f"{escape(parsed.version)}, "
                f"{len(parsed.rules)} rules ({compiled.indexed_rules} indexed on "
                f"{', '.join(compiled.index_fields) or 'nothing'})"
            )
    if failed:
        raise typer.Exit(1)


@rules_app.command("test")
def golden_test(
    file: Annotated[Path, typer.Argument(help="Ruleset file.")],
    cases: Annotated[list[Path], typer.Argument(help="Golden case files (*.cases.yaml).")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print failures only.")] = False,
    sla_policies: SlaOption = None,
    sla_config: SlaFileOption = None,
) -> None:
    """Run golden cases (message -> expected queue, priority, tags); diff on failure."""
    compiled = compile_ruleset(_load(file, sla_policies, sla_config))
    total = failed = 0
    for path in cases:
        src = _read_data(path)
        try:
            outcomes = run_cases(compiled, src)
        except ValueError as exc:
            _error(str(exc))
            raise typer.Exit(1) from None
        for outcome in outcomes:
            total += 1
            failed += not outcome.passed
            if outcome.passed and quiet:
                continue
            style = "green" if outcome.passed else "red"
            for i, line in enumerate(format_outcome(outcome, str(path))):
                console.print(line, style=style if i == 0 else None, markup=False)
    summary = f"{total - failed} passed, {failed} failed"
    console.print(f"[{'red' if failed else 'green'}]{summary}[/]")
    if failed:
        raise typer.Exit(1)


@rules_app.command()
def explain(
    file: Annotated[Path, typer.Argument(help="Ruleset file.")],
    message: Annotated[
        Path, typer.Argument(help="Case-style input, inbound CloudEvent or message data.")
    ],
    context: ContextOption = None,
    now: Annotated[str | None, typer.Option(help="Decision clock (ISO-8601).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Whole trees.")] = False,
) -> None:
    """Show which rules were tried, which condition failed and why, and which matched."""
    ruleset = _load(file)
    clock = _time(now) if now else None
    try:
        inp = input_from_mapping(_read_data(message).data, "input", clock, _context(context))
    except ValueError as exc:
        _error(f"{message}: {exc}")
        raise typer.Exit(1) from None
    for line in render_explanation(explain_input(ruleset, inp), verbose=verbose):
        console.print(line, markup=False)


def _time(value: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}") from None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _kafka(bootstrap: str | None) -> tuple[str, dict[str, Any], Any]:
    """Bootstrap servers, other client settings (security) and the engine settings."""
    from streams.kafka.client import client_kwargs

    settings = load_settings(None)
    client = client_kwargs(settings)
    servers = str(client.pop("bootstrap_servers"))
    return bootstrap or servers, client, settings


@rules_app.command()
def publish(
    file: Annotated[Path, typer.Argument(help="Ruleset file.")],
    bootstrap: Bootstrap = None,
    topic: TopicOption = None,
    sla_policies: SlaOption = None,
    sla_config: SlaFileOption = None,
) -> None:
    """Validate, then write the ruleset to the compacted rules topic (workers hot-reload)."""
    from streams.kafka.rules_topic import publish_ruleset

    ruleset = _load(file, sla_policies, sla_config)
    servers, client, settings = _kafka(bootstrap)
    target = topic or settings.topic(ROUTING_RULES.name)
    if topic is None:  # before any worker ran: create it compacted, 1 partition
        from streams.kafka.topics import TopicManager, core_topics

        here = settings.model_copy(update={"kafka_bootstrap_servers": servers})
        asyncio.run(TopicManager(here).ensure([ROUTING_RULES.name], core_topics(here)))
    doc = ruleset.doc.to_document()
    done = asyncio.run(publish_ruleset(servers, target, doc, **client))
    console.print(
        f"published {ruleset.name} {ruleset.version} to {done.topic} "
        f"(partition {done.partition}, offset {done.offset})",
        markup=False,
    )


@rules_app.command()
def history(
    bootstrap: Bootstrap = None,
    topic: TopicOption = None,
    name: Annotated[str | None, typer.Option(help="Only this ruleset.")] = None,
) -> None:
    """List the ruleset versions still on the rules topic, oldest first."""
    from streams.kafka.rules_topic import ruleset_history

    servers, client, settings = _kafka(bootstrap)
    target = topic or settings.topic(ROUTING_RULES.name)
    try:
        records = asyncio.run(ruleset_history(servers, target, **client))
    except LookupError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    table = Table("ruleset", "version", "rules", "written", "partition", "offset", "source")
    for r in records:
        if name is None or r.name == name:
            table.add_row(
                *map(escape, (r.name, r.version, str(r.rules or "?"), r.timestamp.isoformat(),
                              str(r.partition), str(r.offset), r.source or ""))
            )  # fmt: skip
    console.print(table)


# --- simulate -------------------------------------------------------------------------------


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("replaying"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(), console=err, disable=not enabled, transient=True,
    )  # fmt: skip


def _size(fh: BinaryIO) -> int:
    return os.fstat(fh.fileno()).st_size


def simulate(
    rules: Annotated[Path, typer.Option("--rules", help="Ruleset to try.")],
    baseline: Annotated[Path | None, typer.Option(help="Ruleset to compare against.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="Inbound CloudEvents, one JSON per line.")
    ] = None,
    topic: Annotated[
        list[str] | None,
        typer.Option(help="Replay this channel topic (physical name) instead; repeatable."),
    ] = None,
    from_time: Annotated[
        str | None, typer.Option("--from-time", help="With --topic: ISO-8601 start time.")
    ] = None,
    bootstrap: Bootstrap = None,
    context: ContextOption = None,
    limit: Annotated[int, typer.Option(help="Changed messages to list (0: none).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Report as JSON.")] = False,
    outcomes: Annotated[
        Path | None,
        typer.Option(help="Write what the engine does with each record here, as JSON lines."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on long runs.")] = True,
) -> None:
    """Replay traffic through the engine's routing stage: queue/priority distributions and
    dead letters; with --baseline, what would change. Tickets are decided once, when they
    open; follow-ups stay on their ticket's queue, as in the engine."""

    if (input_file is None) == (not topic):
        raise typer.BadParameter("give exactly one of --input FILE or --topic TOPIC")
    if topic and from_time is None:
        raise typer.BadParameter("--topic needs --from-time")
    candidate = compile_ruleset(_load(rules))
    old = compile_ruleset(_load(baseline)) if baseline is not None else None
    ctx = _context(context)
    if ctx is not None and ctx.orders:
        err.print("note: the context's orders are not used: the engine takes order facts "
                  "from the message", style="yellow", markup=False)  # fmt: skip
    settings = load_settings(None)  # the engine's max_record_bytes and topic prefix
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(outcomes.open("wb")) if outcomes is not None else None

        def write(where: str, record: InRecord, new: Outcome, previous: Outcome | None) -> None:
            assert sink is not None
            sink.write(orjson.dumps(outcome_dict(where, record, new, previous)) + b"\n")

        bt = Backtest(candidate, old, ctx, max_record_bytes=settings.max_record_bytes,
                      on_outcome=write if sink is not None else None)  # fmt: skip
        if input_file is not None:
            try:
                fh = stack.enter_context(input_file.open("rb"))  # a directory fails here too
            except OSError as exc:
                _error(f"{input_file}: cannot read: {_reason(exc)}")
                raise typer.Exit(1) from None
            size = _size(fh)
            with _progress(progress and size >= PROGRESS_MIN_BYTES) as bar:
                task = bar.add_task("replay", total=size)
                for n, line in enumerate(fh, start=1):
                    bt.add_line(line, f"{input_file}:{n}")
                    bar.advance(task, len(line))
        else:
            servers, client, _ = _kafka(bootstrap)
            start = _time(from_time or "")
            try:
                asyncio.run(_replay_topics(bt, servers, client, topic or [], start, progress,
                                           settings.logical))  # fmt: skip
            except LookupError as exc:
                _error(str(exc))
                raise typer.Exit(1) from None
    report = bt.report
    if as_json:
        typer.echo(orjson.dumps(report_dict(report, limit), option=orjson.OPT_INDENT_2).decode())
    else:
        _print_report(report, limit)


async def _replay_topics(
    bt: Backtest,
    bootstrap: str,
    client: dict[str, Any],
    topics: list[str],
    start: datetime,
    progress: bool,
    logical: Callable[[str], str],
) -> None:
    from streams.kafka.rules_topic import message_backlog, read_messages

    total = 0
    for topic in topics:
        total += await message_backlog(bootstrap, topic, start, **client)
    with _progress(progress and total > 0) as bar:
        task = bar.add_task("replay", total=total)
        for topic in topics:
            async for r in read_messages(bootstrap, topic, start, **client):
                record = InRecord(logical(r.topic), r.partition, r.offset, r.key, r.value,
                                  r.timestamp_ms / 1000)  # fmt: skip
                bt.add(record, f"{r.topic}/{r.partition}@{r.offset}")
                bar.advance(task, 1)


def _share(count: int, total: int) -> str:
    return f"{100.0 * count / total:5.1f}%" if total else "  -  "


def _print_report(rep: SimulationReport, limit: int) -> None:
    head = f"{rep.total} records replayed through {rep.ruleset}"
    console.print(head + (f" (baseline {rep.baseline})" if rep.baseline else ""), markup=False)
    cand = rep.candidate
    console.print("outcomes: " + ", ".join(
        f"{k} {n}" for k, n in sorted(cand.outcomes.items(), key=lambda kv: (-kv[1], kv[0]))
    ), markup=False)  # fmt: skip
    if cand.dead_letters:
        reasons = ", ".join(f"{k} {n}" for k, n in cand.dead_letters.most_common())
        console.print(f"[yellow]{sum(cand.dead_letters.values())} dead-lettered[/yellow] "
                      f"({reasons}) as the engine would:")  # fmt: skip
        for where, reason in rep.dead_letter_samples[:10]:
            console.print(f"  {where}: {reason}", markup=False)
    prev = rep.previous
    for title, new, old in (
        ("queue", rep.candidate.queues, prev.queues if prev else None),
        ("priority", rep.candidate.priorities, prev.priorities if prev else None),
    ):
        table = Table(
            title, "messages", "share", *(("baseline", "delta") if old is not None else ())
        )
        for key in sorted(set(new) | set(old or {}), key=lambda k: (-new.get(k, 0), k)):
            row = [escape(key), str(new.get(key, 0)), _share(new.get(key, 0), rep.routed)]
            if old is not None:
                row += [str(old.get(key, 0)), f"{new.get(key, 0) - old.get(key, 0):+d}"]
            table.add_row(*row)
        console.print(table)
    console.print(f"vendor fallbacks: {rep.candidate.fallbacks}")
    if prev is None:
        return
    console.print(
        f"{len(rep.changes)} messages would change destination "
        f"({len(rep.changed_tickets)} tickets routed differently when they opened)"
    )
    if rep.priority_pairs:
        moves = sorted(rep.priority_pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        console.print("priority changes: " + ", ".join(f"{a} -> {b}: {n}" for (a, b), n in moves))
    if rep.pairs:
        pairs = Table("from (baseline)", "to (new)", "messages")
        for (a, b), count in sorted(rep.pairs.items(), key=lambda kv: (-kv[1], kv[0])):
            pairs.add_row(escape(a), escape(b), str(count))
        console.print(pairs)
    if rep.changes and limit > 0:
        console.print(
            "changed (ticket event: baseline queue [rule] -> new queue [rule]):", markup=False
        )
        for c in rep.changes[:limit]:
            console.print(
                f"  {c.ticket} {c.event_id}: {c.old_queue} [{c.old_rule}] -> "
                f"{c.new_queue} [{c.new_rule}]",
                markup=False,
            )
        if len(rep.changes) > limit:
            console.print(f"  ... {len(rep.changes) - limit} more (--limit)")


def main() -> None:  # pragma: no cover - `python -m router.cli_rules` for local use
    app = typer.Typer(no_args_is_help=True)
    app.add_typer(rules_app, name="rules")
    app.command("simulate")(simulate)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
