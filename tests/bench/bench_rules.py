"""Rule-engine benchmark: decisions per second per core, compiled vs the naive evaluator.

    .venv/bin/python tests/bench/bench_rules.py [--sizes 10,100,1000,10000] [--seconds 1]

Rulesets of each size are generated the way large real rulesets grow: a fixed core of
platform rules (enrichment, disputes, payments, account, sellers, language desks, keyword
and regex rules, catch-all) plus per-vendor overrides (a vendor's own routing for a few
intents and channels). The message mix is a fixed, seeded sample of 20,000 messages: 70%
name a vendor that has overrides (uniformly: no hot vendors), the rest an unknown vendor
or none; bodies carry the intent keywords a real inbox does, in several languages; tickets
have 1-5 messages. Inputs are built once (parsing is not measured).

Figures are decisions per CPU second of this one process (so, per core), the best of a
few passes; `compiled/s` is `CompiledRuleset.evaluate`, `adapter/s` the router's path
(`RulesetPolicy.decide` on a `RoutingContext`, which adds building the `Decision`).
The calibration line lets figures from different machines be compared; the stages line
splits the time of one decision (1,000 rules). Not collected by pytest (not a `test_*.py`
file).

The load line times what `router rules validate` does with a large file: a 10,000-rule
ruleset of distinct phrases and regexes (as rulesets grow when every vendor adds keywords),
written out as YAML and as JSON, parsed, validated and compiled (target: <= 3 s each).
`--load-only` prints just that line.

Wall-clock figures on a shared machine swing by +-20%; instruction counts do not. For
instructions per decision, `--sample N` builds the first size's evaluator and message mix,
makes one warm pass, decides N messages and exits; run it under callgrind with N and 2N and
divide the difference of the totals by N (start-up cancels out; a fixed hash seed keeps
it the same in both runs):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python tests/bench/bench_rules.py --sizes 1000 --messages 4000 --sample 4000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `rules`, `router`, `schemas` importable
    sys.path.insert(0, str(REPO))

from router.native import compiled_modules  # noqa: E402 - after sys.path
from router.routing import RoutingContext, TicketFacts  # noqa: E402
from router.rules_policy import RulesetPolicy  # noqa: E402
from rules import (  # noqa: E402
    CompiledRuleset,
    NaiveEvaluator,
    RuleInput,
    Ruleset,
    compile_ruleset,
    parse_ruleset_text,
)
from rules.facts import Facts, TicketInfo  # noqa: E402
from rules.source import SourceDoc  # noqa: E402
from rules.validate import validate_source  # noqa: E402
from schemas.message import InboundMessage  # noqa: E402
from schemas.vendor import VendorProfile, VendorStatus, VendorTier  # noqa: E402

INTENTS = {
    "fraud": ["fraud", "scam", "counterfeit", "stolen card"],
    "chargeback": ["chargeback", "bank dispute"],
    "not_received": ["never arrived", "not received", "nie angekommen", "pas reçu"],
    "payment": ["refund", "charged twice", "payment", "invoice"],
    "payout": ["payout", "settlement"],
    "account": ["password", "log in", "hacked", "2fa"],
    "shipping": ["tracking", "delivery", "courier", "parcel"],
    "order": ["order", "size", "colour", "in stock", "exchange"],
    "return": ["return", "damaged", "broken", "wrong item"],
    "praise": ["thank you", "thanks", "great service"],
}
BODIES = [
    "Hi, my order {o} never arrived and the tracking has not moved for a week. Can you help?",
    "I was charged twice for order {o}, please refund the second payment as soon as possible.",
    "This seller is a scam, the watch is counterfeit. I want my money back.",
    "Does this jacket come in size M? And is the colour the same as in the picture?",
    "I can't log in, my password reset email never comes and 2FA fails.",
    "The lamp arrived damaged, I would like to return it or get an exchange.",
    "Meine Bestellung {o} ist nie angekommen, bitte um Hilfe.",
    "Je n'ai pas reçu ma commande {o}, le colis est perdu.",
    "Thanks for the great service last time! Quick question about delivery times.",
    "My payout for last week is missing from the settlement report.",
    "Hello, I have a general question about how the marketplace works.",
    "I opened a bank dispute because nobody answered about order #{o}.",
]
TARGET_AT_1000 = 100_000  # decisions/s per core (issue 3)
LOAD_RULES = 10_000
LOAD_TARGET_S = 3.0  # parse + validate + compile of a LOAD_RULES ruleset file
PASSES = 5  # timed passes per figure; the best one is kept (noisy shared machines)
LANGS = ["en", "en", "en", "de-DE", "fr", "es-ES", "it", None]
CHANNELS = ["email", "email", "email", "chat", "chat", "social"]
DEPTS = ["disputes", "payments", "trust_safety", "seller_support", "shipping", "platform_desk",
         "social_care", "desk_de", "desk_fr", "desk_es", "desk_it", "returns",
         "general"]  # fmt: skip


CORE_YAML = """
- {id: tag-channel, priority: 1000, then: {tags: ["channel:{message.channel}"], continue: true}}
- {id: vip, priority: 900, when: {field: buyer.vip, eq: true},
   then: {priority: high, sla: vip, tags: [vip], continue: true}}
- {id: social, priority: 900, when: {field: message.channel, eq: social},
   then: {priority: high, tags: [public], continue: true}}
- {id: repeat, priority: 800, when: {any: [{field: ticket.message_count, gte: 4},
                                          {field: ticket.channel_count, gte: 2}]},
   then: {tags: [repeat], continue: true}}
- {id: order-ref, priority: 700,
   when: {field: message.text, matches: '(?i)\\border\\s*#?\\s*o-?\\d{4,}'},
   then: {tags: [order-ref], continue: true}}
- {id: fraud, priority: 500, when: {field: message.intent, contains_any: [fraud, chargeback]},
   then: {route: "dept:disputes", priority: urgent, sla: disputes}}
- {id: vendor-inactive, priority: 450,
   when: {all: [{field: message.vendor_id, exists: true},
                {field: vendor.status, in: [suspended, offboarded]}]},
   then: {route: "dept:platform_desk", priority: high}}
- {id: seller, priority: 400, when: {field: sender.role, eq: seller},
   then: {route: "dept:seller_support"}}
- {id: account, priority: 380, when: {field: message.intent, contains: account},
   then: {route: "dept:trust_safety", priority: high}}
- {id: keyword-legal, priority: 375,
   when: {field: message.text, contains_any: [lawyer, court, legal action]},
   then: {route: "dept:disputes", priority: urgent}}
- {id: to-vendor, priority: 100, when: {field: message.vendor_id, exists: true},
   then: {route: "vendor:{message.vendor_id}", fallback: "dept:platform_desk",
          contract: {any: [{field: vendor.tier, in: [gold, platinum]},
                           {field: now, within_hours: vendor_hours}]}}}
"""
DESKS = (("de", "desk_de"), ("fr", "desk_fr"), ("es", "desk_es"), ("it", "desk_it"))
BY_INTENT = (("not_received", "disputes"), ("payment", "payments"), ("payout", "payments"),
             ("shipping", "shipping"), ("return", "returns"))  # fmt: skip


def _core_rules() -> list[dict[str, Any]]:
    """Platform rules: enrichment, disputes, sellers, language desks, intent x channel."""
    rules: list[dict[str, Any]] = yaml.safe_load(CORE_YAML)
    for i, (lang, dept) in enumerate(DESKS):
        rules.append({"id": f"lang-{lang}", "priority": 200 - i,
                      "when": {"field": "message.language_base", "eq": lang},
                      "then": {"route": f"dept:{dept}", "tags": [f"lang:{lang}"]}})  # fmt: skip
    for i, (intent, dept) in enumerate(BY_INTENT):
        for j, channel in enumerate(("email", "chat", "social")):
            when = {"all": [{"field": "message.intent", "contains": intent},
                            {"field": "message.channel", "eq": channel}]}  # fmt: skip
            rules.append({"id": f"{intent}-{channel}", "priority": 300 - i * 3 - j, "when": when,
                          "then": {"route": f"dept:{dept}", "tags": [intent]}})  # fmt: skip
    return rules


def _vendor_rules(vendor: str, k: int, rng: random.Random) -> list[dict[str, Any]]:
    """A vendor's overrides: its own queue for some intents, a department for others."""
    intents = sorted(INTENTS)
    out = []
    for j in range(k):
        when: list[dict[str, Any]] = [
            {"field": "message.vendor_id", "eq": vendor},
            {"field": "message.intent", "contains_any": rng.sample(intents, 2)},
        ]
        if rng.random() < 0.5:
            when.append(
                {"field": "message.channel", "in": rng.sample(["email", "chat", "social"], 2)}
            )
        if rng.random() < 0.3:
            when.append({"not": {"field": "buyer.open_tickets", "gt": 3}})
        then: dict[str, Any] = (
            {"route": f"vendor:{vendor}", "fallback": "dept:platform_desk"}
            if rng.random() < 0.6
            else {"route": f"dept:{rng.choice(DEPTS)}", "priority": rng.choice(["normal", "high"])}
        )
        then["tags"] = [f"v:{vendor}"]
        out.append({"id": f"{vendor}-{j}", "priority": 250, "when": {"all": when}, "then": then})
    return out


def build_ruleset(size: int, seed: int = 7) -> tuple[Ruleset, list[str]]:
    rng = random.Random(seed)
    core = _core_rules()[: max(1, size - 1)]
    per_vendor = 4
    vendors = [f"vendor-{i:05d}" for i in range(max(0, size - len(core) - 1) // per_vendor)]
    rules = list(core)
    for v in vendors:
        rules.extend(_vendor_rules(v, per_vendor, rng))
    while len(rules) < size - 1:
        rules.append(
            {
                "id": f"pad-{len(rules)}",
                "priority": 50,
                "when": {"field": "message.vendor_id", "eq": f"pad-{len(rules)}"},
                "then": {"route": "dept:general"},
            }
        )
    rules.append({"id": "catch-all", "priority": -1000, "then": {"route": "dept:general"}})
    doc = {
        "name": f"bench-{size}", "version": "1", "departments": DEPTS,
        "sla_policies": ["vip", "disputes", "standard"], "defaults": {"sla": "standard"},
        "intents": INTENTS,
        "calendars": {"vendor_hours": {"timezone": "vendor",
                                       "hours": {"weekdays": ["08:00-20:00"]}}},
        "rules": rules,
    }  # fmt: skip
    ruleset, problems = validate_source(SourceDoc(f"<bench-{size}>", doc))
    if ruleset is None:
        raise SystemExit("\n".join(map(str, problems[:10])))
    return ruleset, vendors


def large_document(size: int, seed: int = 5) -> dict[str, Any]:
    """A ruleset document of `size` rules whose phrases and regexes are nearly all distinct:
    per-vendor keyword rules, subject phrases, reference-number regexes, numeric tests."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "zu", "bri", "dra",
                 "gle", "pho", "stri", "qua"]  # fmt: skip

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))

    def phrase() -> str:
        return " ".join(word() for _ in range(rng.randint(1, 3)))

    rules: list[dict[str, Any]] = []
    for i in range(size - 1):
        roll = rng.random()
        when: dict[str, Any]
        if roll < 0.45:
            when = {"all": [{"field": "message.vendor_id", "eq": f"vendor-{i // 4:05d}"},
                            {"field": "message.text",
                             "contains_any": [phrase() for _ in range(rng.randint(2, 4))]}]}
        elif roll < 0.65:
            when = {"field": "message.subject", "contains": phrase()}
        elif roll < 0.85:
            when = {"field": "message.text",
                    "matches": f"(?i)\\b{word()}-{i}[-_ ]?\\d{{{rng.randint(2, 6)}}}\\b"}
        else:
            when = {"all": [{"field": "ticket.message_count", "gte": rng.randint(2, 9)},
                            {"field": "message.text", "contains": phrase()}]}
        then: dict[str, Any] = {"route": f"dept:{rng.choice(DEPTS)}", "tags": [f"t{i % 97}"]}
        if rng.random() < 0.2:
            then["priority"] = rng.choice(["high", "urgent"])
        rules.append({"id": f"r-{i}", "priority": rng.randint(0, 900), "when": when,
                      "then": then})  # fmt: skip
    rules.append({"id": "catch-all", "priority": -1000, "then": {"route": "dept:general"}})
    return {"name": "bench-load", "version": "1", "departments": DEPTS,
            "sla_policies": ["vip", "disputes", "standard"], "defaults": {"sla": "standard"},
            "intents": INTENTS, "rules": rules}  # fmt: skip


def load_times(size: int, passes: int = 2) -> list[tuple[str, int, float]]:
    """(format, bytes, best CPU seconds) to parse, validate and compile a `size`-rule file."""
    doc = large_document(size)
    dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    texts = {"yaml": yaml.dump(doc, Dumper=dumper, sort_keys=False, allow_unicode=True),
             "json": json.dumps(doc, indent=1)}  # fmt: skip
    out = []
    for fmt, text in texts.items():
        best = float("inf")
        for _ in range(passes):
            gc.collect()
            start = time.process_time()
            parsed = parse_ruleset_text(text, f"bench.{fmt}")
            if isinstance(parsed, list):
                raise SystemExit("\n".join(map(str, parsed[:10])))
            compile_ruleset(parsed)
            best = min(best, time.process_time() - start)
            del parsed
        out.append((fmt, len(text.encode()), best))
    return out


def print_load_times() -> None:
    for fmt, size, seconds in load_times(LOAD_RULES):
        met = "ok" if seconds <= LOAD_TARGET_S else "MISSED"
        print(f"load: {LOAD_RULES:,} rules as {fmt} ({size / 1e6:.1f} MB), parse + validate + "
              f"compile: {seconds:.2f} s CPU (target <= {LOAD_TARGET_S:g} s: {met})")  # fmt: skip


def build_inputs(vendors: Sequence[str], n: int, seed: int = 11) -> list[RuleInput]:
    rng = random.Random(seed)
    base = datetime(2024, 6, 3, 6, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        roll = rng.random()
        vendor = rng.choice(vendors) if vendors and roll < 0.7 else (
            "vendor-unknown" if roll < 0.85 else None)  # fmt: skip
        channel = rng.choice(CHANNELS)
        msg = InboundMessage.model_validate({
            "channel": channel, "message_id": f"m{i}", "thread_ref": f"t{i}",
            "sender": {"id": f"b{rng.randint(1, 500)}",
                       "role": "seller" if rng.random() < 0.05 else "buyer"},
            "subject": "Order question" if channel == "email" else None,
            "body": rng.choice(BODIES).format(o=f"o-{rng.randint(10000, 99999)}"),
            "vendor_id": vendor, "language": rng.choice(LANGS),
        })  # fmt: skip
        profile = None
        if vendor is not None and vendor != "vendor-unknown":
            profile = VendorProfile(
                vendor_id=vendor,
                status=VendorStatus.SUSPENDED if rng.random() < 0.05 else VendorStatus.ACTIVE,
                tier=rng.choice(list(VendorTier)), timezone="Europe/Berlin",
            )  # fmt: skip
        now = base + timedelta(minutes=17 * i)
        count = rng.choice((1, 1, 1, 2, 3, 5))
        ticket = TicketInfo(
            ticket_id=f"t{i}", is_new=count == 1, message_count=count,
            channels=frozenset((channel,)), opened_at=now - timedelta(hours=count - 1),
            age_seconds=(count - 1) * 3600.0,
        )  # fmt: skip
        out.append(RuleInput(message=msg, now=now, ticket=ticket, vendor=profile))
    return out


def rate(evaluate: Callable[[Any], object], inputs: Sequence[Any], budget: float) -> float:
    """Decisions per CPU second of this process (one core): best of PASSES timed passes.

    CPU time rather than wall time, so that other processes on a shared machine do not
    count; each pass runs whole rounds over `inputs` for at least `budget` seconds."""
    best = 0.0
    for _ in range(PASSES):
        gc.collect()
        done = 0
        start = time.process_time()
        while True:
            for inp in inputs:
                evaluate(inp)
            done += len(inputs)
            spent = time.process_time() - start
            if spent >= budget:
                break
        best = max(best, done / spent)
    return best


def calibrate() -> float:
    """Microseconds for a fixed pure-Python loop, to compare machines (lower is faster)."""

    def loop() -> int:
        total = 0
        for i in range(100):
            total += i
        return total

    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for _ in range(20_000):
            loop()
        best = min(best, (time.process_time() - start) / 20_000 * 1e6)
    return best


def stages(compiled: CompiledRuleset, inputs: Sequence[RuleInput], budget: float) -> str:
    """Microseconds per decision up to each stage of `evaluate` (cumulative), for profiling.

    Reads the evaluator's internals (`_derive`, `_key`, `_chain*`): a diagnostic, not an API.
    `+text hits` is the one search of the text's phrases and regexes the index key makes."""
    derive, key_of = compiled._derive, compiled._key
    text = derive._text  # the matcher of message.text: phrases (intents) and regexes

    def chain(i: RuleInput) -> object:
        key = key_of(Facts(i, derive))
        return compiled._chains.get(key) or compiled._chain(key)

    steps: list[tuple[str, Callable[[Any], object]]] = [
        ("Facts", lambda i: Facts(i, derive)),
        ("+text", lambda i: Facts(i, derive).text()),
        ("+text hits", lambda i: text.scan(Facts(i, derive))),
        ("+index key", lambda i: key_of(Facts(i, derive))),
        ("+select", chain),
        ("evaluate", compiled.evaluate),
    ]
    return "; ".join(f"{name} {1e6 / rate(step, inputs, budget):.1f}" for name, step in steps)


def contexts(inputs: Sequence[RuleInput]) -> list[RoutingContext]:
    """The same inputs as the router's `RoutingContext`s, for the adapter path."""
    return [
        RoutingContext(
            message=i.message,
            ticket=TicketFacts(
                ticket_id=i.message.thread_ref,
                is_new=i.ticket.is_new if i.ticket else True,
                message_count=i.ticket.message_count if i.ticket else 1,
                channels=frozenset((i.message.channel.value,)),
                opened_at=i.now,
                age_seconds=i.ticket.age_seconds if i.ticket else 0.0,
            ),
            now=i.now,
            vendor=i.vendor,
        )
        for i in inputs
    ]


def decide_sample(size: int, messages: int, n: int, adapter: bool) -> None:
    """One warm pass over the mix, then `n` decisions: the part that grows with `n`."""
    ruleset, vendors = build_ruleset(size)
    compiled = CompiledRuleset(ruleset)
    inputs: Sequence[Any] = build_inputs(vendors, messages)
    decide: Callable[[Any], object] = compiled.evaluate
    if adapter:
        inputs, decide = contexts(inputs), RulesetPolicy(compiled).decide
    for inp in inputs:
        decide(inp)
    for i in range(n):
        decide(inputs[i % len(inputs)])


def pure_python_rate(size: int, messages: int, seconds: float) -> float:
    """compiled/s at `size` rules in a subprocess that imports the sources, not the
    extensions."""
    command = [sys.executable, __file__, "--rate-only", "--sizes", str(size)]
    command += ["--messages", str(messages), "--seconds", str(seconds)]
    env = {**os.environ, "ROUTER_NATIVE": "off"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per timed pass")
    ap.add_argument("--messages", type=int, default=20_000, help="distinct messages in the mix")
    ap.add_argument("--sample", type=int, default=0,
                    help="only decide this many messages at the first size (for callgrind)")
    ap.add_argument("--adapter", action="store_true", help="--sample the adapter path")
    ap.add_argument("--load-only", action="store_true",
                    help="print the large-file load time only")  # fmt: skip
    ap.add_argument("--rate-only", action="store_true",
                    help="print compiled/s at the first size only (pure-Python row)")  # fmt: skip
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.load_only:
        print_load_times()
        return
    if args.sample:
        decide_sample(sizes[0], args.messages, args.sample, args.adapter)
        return
    if args.rate_only:
        ruleset, vendors = build_ruleset(sizes[0])
        compiled = CompiledRuleset(ruleset)
        print(f"{rate(compiled.evaluate, build_inputs(vendors, args.messages), args.seconds):.0f}")
        return
    native = "rules.compile" in compiled_modules()
    print(f"python {sys.version.split()[0]}; CPU time of one process (one core); "
          f"{args.messages:,} distinct messages in the mix; native build: "
          f"{'compiled' if native else 'pure Python'}")  # fmt: skip
    print(f"calibration: a 100-step Python loop takes {calibrate():.2f} us on this machine")
    head = (f"{'rules':>7} {'indexed':>8} {'compiled/s':>11} {'adapter/s':>10} {'naive/s':>9} "
            f"{'speed-up':>9} {'cands/msg':>9} {'compile s':>9}")  # fmt: skip
    print(head)
    results: dict[int, float] = {}
    for size in sizes:
        ruleset, vendors = build_ruleset(size)
        t0 = time.process_time()
        compiled = CompiledRuleset(ruleset)
        build = time.process_time() - t0
        naive = NaiveEvaluator(ruleset)
        inputs = build_inputs(vendors, args.messages)
        for inp in inputs[:300]:  # sanity: both evaluators agree on this mix
            a, b = compiled.evaluate(inp), naive.evaluate(inp)
            if (a.queue, a.priority, a.tags, a.matched) != (b.queue, b.priority, b.tags, b.matched):
                raise SystemExit(f"compiled and naive disagree on {inp.message.message_id}")
        sample = inputs[:1000]
        cands = sum(len(compiled.candidates(i)) for i in sample) / len(sample)
        fast = rate(compiled.evaluate, inputs, args.seconds)
        policy = RulesetPolicy(compiled)
        adapter = rate(policy.decide, contexts(inputs[:5000]), args.seconds)
        slow_inputs = inputs[: max(20, min(len(inputs), 200_000 // max(size, 1)))]
        slow = rate(naive.evaluate, slow_inputs, args.seconds)
        results[size] = fast
        print(f"{size:>7} {compiled.indexed_rules:>8} {fast:>11,.0f} {adapter:>10,.0f} "
              f"{slow:>9,.0f} {fast / slow:>8.1f}x {cands:>9.1f} {build:>9.2f}")  # fmt: skip
    if native and 1000 in results:  # the same figure on the sources, for the ratio
        pure = pure_python_rate(1000, args.messages, args.seconds)
        print(f"   same at 1,000 rules, pure Python (ROUTER_NATIVE=off): {pure:,.0f}/s "
              f"(native is {results[1000] / pure:.2f}x)")  # fmt: skip
    if 1000 in results:
        met = "ok" if results[1000] >= TARGET_AT_1000 else "MISSED"
        print(f"target: >= {TARGET_AT_1000:,} decisions/s at 1,000 rules: {met}")
    probe = 1000 if 1000 in sizes else max(sizes)
    ruleset, vendors = build_ruleset(probe)
    probe_inputs = build_inputs(vendors, args.messages)
    timings = stages(CompiledRuleset(ruleset), probe_inputs, args.seconds / 2)
    print(f"stages at {probe:,} rules, us per decision (cumulative): {timings}")
    if 1000 in results and 10000 in results:
        print(f"1,000 -> 10,000 rules: compiled is {results[1000] / results[10000]:.2f}x slower")
    big = max(sizes)
    ruleset, _ = build_ruleset(big)
    gc.collect()
    tracemalloc.start()
    compiled = CompiledRuleset(ruleset)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"memory of the {big:,}-rule compiled evaluator: {current / 2**20:.1f} MiB "
        f"(peak while compiling {peak / 2**20:.1f} MiB), besides the validated ruleset"
    )
    del compiled, ruleset
    gc.collect()
    tracemalloc.start()
    _ruleset, _ = build_ruleset(big)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"memory of the {big:,}-rule validated ruleset (document and AST): "
          f"{current / 2**20:.1f} MiB")  # fmt: skip
    print_load_times()


if __name__ == "__main__":
    main()
