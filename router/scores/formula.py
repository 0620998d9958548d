"""The score formula and tiers: a validated, documented configuration (YAML or defaults).

    score = 100 * sum(weight[c] * goodness[c]) / sum(weight[c])   over the components c
            that have something to measure in the 30-day window

| component         | goodness (0..1)                                   |
|-------------------|---------------------------------------------------|
| `answered_within` | share of tickets first answered within the target |
| `resolution`      | resolution rate                                   |
| `reopens`         | 1 - reopen rate                                   |
| `sla`             | 1 - SLA breach rate                               |
| `disputes`        | 1 - (dispute rate + disputes lost / volume), >= 0 |
| `csat`            | (CSAT average - 1) / 4                            |

Tier: `top` at `top_at` or more, `at_risk` below `at_risk_below`, `standard` between, and
`standard` whatever the score while the window holds fewer than `min_volume` tickets (too
few to judge a seller).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.scores import ScoreTier, WindowFigures

Weight = Annotated[float, Field(ge=0, le=100)]


class Weights(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    answered_within: Weight = 30
    resolution: Weight = 20
    reopens: Weight = 10
    sla: Weight = 15
    disputes: Weight = 15
    csat: Weight = 10


class ScoreFormula(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: Weights = Weights()
    top_at: Annotated[float, Field(ge=0, le=100)] = 85
    at_risk_below: Annotated[float, Field(ge=0, le=100)] = 60
    min_volume: Annotated[int, Field(ge=0, le=1_000_000)] = 5

    @model_validator(mode="after")
    def _tiers_in_order(self) -> ScoreFormula:
        if self.at_risk_below > self.top_at:
            raise ValueError(
                f"at_risk_below ({self.at_risk_below:g}) must not exceed top_at ({self.top_at:g})"
            )
        if sum(self.weights.model_dump().values()) <= 0:
            raise ValueError("at least one weight must be positive")
        return self

    def components(self, w: WindowFigures) -> dict[str, float | None]:
        """Each component's goodness (None: nothing to measure)."""
        disputes = None
        if w.dispute_rate is not None and w.volume:
            disputes = max(0.0, 1 - w.dispute_rate - w.disputes_lost / w.volume)
        return {
            "answered_within": w.answered_within,
            "resolution": w.resolution_rate,
            "reopens": None if w.reopen_rate is None else 1 - w.reopen_rate,
            "sla": None if w.sla_breach_rate is None else 1 - w.sla_breach_rate,
            "disputes": disputes,
            "csat": None if w.csat_avg is None else (w.csat_avg - 1) / 4,
        }

    def score(self, window: WindowFigures) -> float | None:
        weights = self.weights.model_dump()
        total = weighted = 0.0
        for name, goodness in self.components(window).items():
            if goodness is None or weights[name] == 0:
                continue
            total += weights[name]
            weighted += weights[name] * goodness
        return round(100 * weighted / total, 2) if total else None

    def tier(self, score: float | None, volume: int) -> ScoreTier:
        if score is None or volume < self.min_volume:
            return ScoreTier.STANDARD
        if score >= self.top_at:
            return ScoreTier.TOP
        if score < self.at_risk_below:
            return ScoreTier.AT_RISK
        return ScoreTier.STANDARD


class ScoreFormulaError(ValueError):
    """A formula file that cannot be used; says which file and field."""


def load_formula(path: Path | None) -> ScoreFormula:
    """The formula in `path` (YAML), or the defaults above when None."""
    if path is None:
        return ScoreFormula()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScoreFormulaError(f"{path}: cannot read: {exc}") from None
    try:
        return ScoreFormula.model_validate(doc or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ScoreFormulaError(f"{path}: {problems}") from None
