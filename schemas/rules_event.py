"""Events about routing rulesets on `routing.rules.events` (key: the ruleset name).

`support.routing.ruleset_refused`: a worker read a ruleset record from `routing.rules` that
does not validate (or names an SLA policy the worker does not run with), refused it and
kept routing with `kept`. Every worker that reads the record reports it with the same
CloudEvent `id` (derived from the record's position), so consumers dedupe on `id`.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

RULESET_REFUSED = "support.routing.ruleset_refused"
# the type of a ruleset record on `routing.rules` (the document itself: `rules.model`)
RULESET_PUBLISHED = "support.ruleset.published"


class RulesetProblem(BaseModel):
    """One problem, as `router rules validate` prints it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str = Field(description="Where the ruleset came from: topic[partition]@offset.")
    line: int | None = Field(description="Line in the ruleset document, when known.")
    rule: str | None = Field(description="Rule id, when the problem is in a rule.")
    message: str = Field(description="What is wrong, specifically.")


class RulesetRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ruleset: str
    version: str


class RulesetRefused(BaseModel):
    """`data` of a `support.routing.ruleset_refused` event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ruleset: str = Field(description="Name in the record (its key when unreadable; '?').")
    version: str | None = Field(description="Version in the record, when readable.")
    topic: str = Field(description="Logical rules topic the record was read from.")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    published_at: AwareDatetime = Field(description="The record's Kafka timestamp.")
    problems: list[RulesetProblem] = Field(min_length=1)
    kept: RulesetRef = Field(description="The policy the worker goes on routing with.")
