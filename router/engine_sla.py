"""The SLA policy names the engine runs with: the only ones a ruleset may name.

A ruleset naming a policy the engine does not have would silently get the default policy
on every ticket it routes, so the CLI (`rules validate|test|explain|publish`) and the worker
(`--rules FILE` and hot reload) check rulesets against these names.
"""

from __future__ import annotations

from pathlib import Path


class SlaConfigError(ValueError):
    """The SLA policy file cannot be read or does not validate."""


def engine_sla_policies(path: Path | None = None) -> tuple[str, ...]:
    """Policy names of the SLA file at `path` (default: the built-in policies)."""
    from router.sla.policy import DEFAULT_POLICY_FILE, load_sla_config

    target = path or DEFAULT_POLICY_FILE
    try:
        return tuple(load_sla_config(target).policies)
    except (OSError, ValueError) as exc:  # SlaPolicyError's lines name the file
        raise SlaConfigError(f"cannot load SLA policies: {exc}") from exc
