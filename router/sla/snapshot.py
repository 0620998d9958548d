"""The routed ticket a lifecycle state carries (its history, re-published on a re-route).

It is most of a stored state and rarely needed, so it is decoded lazily: a `Snapshot` holds
the stored JSON bytes, or a model, plus field updates not yet applied. A priority raise or a
re-route on the tick path records its updates in a new snapshot (no pydantic work); the model
is built when an output that carries the ticket is read or rendered, and the bytes when the
state is stored (a JSON-level patch of the stored bytes: `model_copy(update=...)` does not
validate either, so both give the same ticket).
"""

from __future__ import annotations

from typing import Any

import orjson

from router.sla.instants import from_us
from router.sla.wire import iso_us
from schemas.ticket import Priority, RoutedTicket, SlaTerms

# New `sla` terms of the ticket: (policy, ((metric name, rung-1 deadline in epoch us), ...)).
# Plain tuples of strings and ints: the cyclic GC stops tracking them after one pass.
TermsUpdate = tuple[str, tuple[tuple[str, int], ...]]


def _terms_model(terms: TermsUpdate) -> SlaTerms:
    policy, deadlines = terms
    return SlaTerms(policy=policy, deadlines={m: from_us(us) for m, us in deadlines})


def _terms_json(terms: TermsUpdate) -> dict[str, Any]:
    policy, deadlines = terms
    return {"policy": policy, "deadlines": {m: iso_us(us) for m, us in deadlines}}


class Snapshot:
    """Immutable by contract (shared between a state and its copies); caches what it decodes.

    A base snapshot is stored bytes or a model; an updated one is a base plus field updates,
    built from the base's bytes or model (each decoded once) when first needed. The updates
    are slots rather than a dict: one object per update for the GC to track, not three.
    """

    __slots__ = ("_base", "_model", "_priority", "_queue", "_raw", "_rule_id", "_sla")

    def __init__(self, raw: bytes | None = None, model: RoutedTicket | None = None) -> None:
        if raw is None and model is None:
            raise ValueError("a snapshot needs stored bytes or a model")
        self._raw = raw
        self._model = model
        self._base: Snapshot | None = None
        self._priority: Priority | None = None
        self._sla: TermsUpdate | None = None
        self._queue: str | None = None
        self._rule_id: str | None = None

    @classmethod
    def of(cls, ticket: RoutedTicket | None) -> Snapshot | None:
        return None if ticket is None else cls(model=ticket)

    def updated(
        self,
        *,
        priority: Priority,
        sla: TermsUpdate,
        queue: str | None = None,
        rule_id: str | None = None,
    ) -> Snapshot:
        """A snapshot with these fields replaced (queue and rule_id only when given)."""
        new = Snapshot.__new__(Snapshot)
        new._base = self._base or self
        new._raw = new._model = None
        new._priority = priority
        new._sla = sla
        new._queue = self._queue if queue is None else queue
        new._rule_id = self._rule_id if rule_id is None else rule_id
        return new

    def _updates(self) -> dict[str, Any]:
        """The fields an updated snapshot replaces, in the order they were first replaced."""
        updates: dict[str, Any] = {"priority": self._priority, "sla": self._sla}
        if self._queue is not None:
            updates["queue"] = self._queue
        if self._rule_id is not None:
            updates["rule_id"] = self._rule_id
        return updates

    @property
    def model(self) -> RoutedTicket:
        model = self._model
        if model is None:
            base = self._base
            if base is None:
                assert self._raw is not None
                model = RoutedTicket.model_validate_json(self._raw)
            else:
                update = self._updates()
                update["sla"] = _terms_model(update["sla"])
                model = base.model.model_copy(update=update)
            self._model = model
        return model

    @property
    def raw(self) -> bytes:
        """Stored form: compact JSON (the model's without default values, or a patch of it)."""
        raw = self._raw
        if raw is None:
            base = self._base
            if base is None:
                assert self._model is not None
                raw = self._model.model_dump_json(exclude_defaults=True).encode()
            else:
                document = orjson.loads(base.raw)
                for key, value in self._updates().items():
                    if key == "sla":
                        document[key] = _terms_json(value)
                    elif isinstance(value, Priority):
                        document[key] = value.value
                    else:
                        document[key] = value
                raw = orjson.dumps(document)
            self._raw = raw
        return raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snapshot):
            return NotImplemented
        return self.model == other.model

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Snapshot({self.model!r})"
