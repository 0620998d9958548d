"""Rule-engine benchmark: decisions per second per core, compiled vs the naive evaluator.

    .venv/bin/python tests/bench/bench_rules.py [--sizes 10,100,1000,10000] [--seconds 2]

Rulesets of each size are generated the way large real rulesets grow: a fixed core of
platform rules (enrichment, disputes, payments, account, sellers, language desks, keyword
and regex rules, catch-all) plus per-vendor overrides (a vendor's own routing for a few
intents and channels). The message mix is a fixed, seeded sample: 70% of messages name a
vendor that has overrides, the rest name an unknown vendor or none; bodies carry the
intent keywords a real inbox does, in several languages. Inputs are built once (parsing
is not measured); each timing is the best of three runs. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rules import CompiledRuleset, NaiveEvaluator, RuleInput, Ruleset  # noqa: E402
from rules.loader import SourceDoc  # noqa: E402
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
LANGS = ["en", "en", "en", "de-DE", "fr", "es-ES", "it", None]
CHANNELS = ["email", "email", "email", "chat", "chat", "social"]
DEPTS = ["disputes", "payments", "trust_safety", "seller_support", "shipping", "platform_desk",
         "social_care", "desk_de", "desk_fr", "desk_es", "desk_it", "returns", "general"]  # fmt: skip
CORE_RULES = 30


def _core_rules() -> list[dict[str, Any]]:
    r: list[dict[str, Any]] = [
        {"id": "tag-channel", "priority": 1000,
         "then": {"tags": ["channel:{message.channel}"], "continue": True}},
        {"id": "vip", "priority": 900, "when": {"field": "buyer.vip", "eq": True},
         "then": {"priority": "high", "sla": "vip", "tags": ["vip"], "continue": True}},
        {"id": "social", "priority": 900, "when": {"field": "message.channel", "eq": "social"},
         "then": {"priority": "high", "tags": ["public"], "continue": True}},
        {"id": "repeat", "priority": 800,
         "when": {"any": [{"field": "ticket.message_count", "gte": 4},
                          {"field": "ticket.channel_count", "gte": 2}]},
         "then": {"tags": ["repeat"], "continue": True}},
        {"id": "order-ref", "priority": 700,
         "when": {"field": "message.text", "matches": r"(?i)\border\s*#?\s*o-?\d{4,}"},
         "then": {"tags": ["order-ref"], "continue": True}},
        {"id": "fraud", "priority": 500,
         "when": {"field": "message.intent", "contains_any": ["fraud", "chargeback"]},
         "then": {"route": "dept:disputes", "priority": "urgent", "sla": "disputes"}},
        {"id": "vendor-inactive", "priority": 450,
         "when": {"all": [{"field": "message.vendor_id", "exists": True},
                          {"field": "vendor.status", "in": ["suspended", "offboarded"]}]},
         "then": {"route": "dept:platform_desk", "priority": "high"}},
        {"id": "seller", "priority": 400, "when": {"field": "sender.role", "eq": "seller"},
         "then": {"route": "dept:seller_support"}},
        {"id": "account", "priority": 380,
         "when": {"field": "message.intent", "contains": "account"},
         "then": {"route": "dept:trust_safety", "priority": "high"}},
        {"id": "keyword-legal", "priority": 375,
         "when": {"field": "message.text", "contains_any": ["lawyer", "court", "legal action"]},
         "then": {"route": "dept:disputes", "priority": "urgent"}},
    ]
    for i, (lang, dept) in enumerate((("de", "desk_de"), ("fr", "desk_fr"), ("es", "desk_es"),
                                      ("it", "desk_it"))):  # fmt: skip
        r.append({"id": f"lang-{lang}", "priority": 200 - i,
                  "when": {"field": "message.language_base", "eq": lang},
                  "then": {"route": f"dept:{dept}", "tags": [f"lang:{lang}"]}})
    for i, (intent, dept) in enumerate((("not_received", "disputes"), ("payment", "payments"),
                                        ("payout", "payments"), ("shipping", "shipping"),
                                        ("return", "returns"))):  # fmt: skip
        for j, channel in enumerate(("email", "chat", "social")):
            r.append({"id": f"{intent}-{channel}", "priority": 300 - i * 3 - j,
                      "when": {"all": [{"field": "message.intent", "contains": intent},
                                       {"field": "message.channel", "eq": channel}]},
                      "then": {"route": f"dept:{dept}", "tags": [intent]}})
    r.append({"id": "to-vendor", "priority": 100,
              "when": {"field": "message.vendor_id", "exists": True},
              "then": {"route": "vendor:{message.vendor_id}", "fallback": "dept:platform_desk",
                       "contract": {"any": [{"field": "vendor.tier", "in": ["gold", "platinum"]},
                                            {"field": "now", "within_hours": "vendor_hours"}]}}})
    return r


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
            when.append({"field": "message.channel", "in": rng.sample(["email", "chat", "social"], 2)})
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
        rules.append({"id": f"pad-{len(rules)}", "priority": 50,
                      "when": {"field": "message.vendor_id", "eq": f"pad-{len(rules)}"},
                      "then": {"route": "dept:general"}})
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
        out.append(RuleInput(message=msg, now=now, vendor=profile))
    return out


def rate(evaluate: Callable[[RuleInput], object], inputs: Sequence[RuleInput],
         budget: float) -> float:  # fmt: skip
    """Decisions per second: best of three passes, each at most `budget` seconds."""
    best = 0.0
    for _ in range(3):
        gc.collect()
        done = 0
        start = time.perf_counter()
        deadline = start + budget
        while True:
            for inp in inputs:
                evaluate(inp)
            done += len(inputs)
            if time.perf_counter() >= deadline:
                break
        best = max(best, done / (time.perf_counter() - start))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--seconds", type=float, default=1.0, help="per timing pass")
    ap.add_argument("--messages", type=int, default=2000)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"python {sys.version.split()[0]}, one core, {args.messages} messages in the mix")
    print(f"{'rules':>7} {'indexed':>8} {'compiled/s':>12} {'naive/s':>10} {'speed-up':>9} "
          f"{'cands/msg':>9} {'build s':>8}")  # fmt: skip
    results: dict[int, float] = {}
    for size in sizes:
        t0 = time.perf_counter()
        ruleset, vendors = build_ruleset(size)
        compiled = CompiledRuleset(ruleset)
        build = time.perf_counter() - t0
        naive = NaiveEvaluator(ruleset)
        inputs = build_inputs(vendors, args.messages)
        for inp in inputs[:200]:  # sanity: both evaluators agree on this mix
            a, b = compiled.evaluate(inp), naive.evaluate(inp)
            if (a.queue, a.priority, a.tags, a.matched) != (b.queue, b.priority, b.tags, b.matched):
                raise SystemExit(f"compiled and naive disagree on {inp.message.message_id}")
        cands = sum(len(compiled.candidates(i)) for i in inputs[:500]) / min(500, len(inputs))
        fast = rate(compiled.evaluate, inputs, args.seconds)
        slow_inputs = inputs[: max(20, min(len(inputs), 200_000 // max(size, 1)))]
        slow = rate(naive.evaluate, slow_inputs, args.seconds)
        results[size] = fast
        print(f"{size:>7} {compiled.indexed_rules:>8} {fast:>12,.0f} {slow:>10,.0f} "
              f"{fast / slow:>8.1f}x {cands:>9.1f} {build:>8.2f}")  # fmt: skip
    if 1000 in results and 10000 in results:
        print(f"slow-down 1,000 -> 10,000 rules: {results[1000] / results[10000]:.2f}x")
    big = max(sizes)
    ruleset, _ = build_ruleset(big)
    gc.collect()
    tracemalloc.start()
    compiled = CompiledRuleset(ruleset)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"memory of the {big:,}-rule compiled evaluator (beyond the validated ruleset): "
          f"{current / 2**20:.1f} MiB (peak while compiling {peak / 2**20:.1f} MiB)")
    gc.collect()
    tracemalloc.start()
    ruleset, _ = build_ruleset(big)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"memory of the {big:,}-rule validated ruleset (AST and document): "
          f"{current / 2**20:.1f} MiB")
    del compiled


if __name__ == "__main__":
    main()
