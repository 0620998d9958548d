"""Equality and repr by field values for the plain classes of the firing path.

Those classes are written out by hand rather than as dataclasses (under the native build a
dataclass's generated `__init__` stays Python-level); this base gives them what a dataclass
would: `==` on the values of `FIELDS`, no hash (they are mutable or hold mutable values), and
a `Name(field=value, ...)` repr.
"""

from __future__ import annotations

from typing import ClassVar


class FieldValues:
    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def field_values(self) -> tuple[object, ...]:
        return tuple([getattr(self, name) for name in self.FIELDS])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, FieldValues)
        return self.field_values() == other.field_values()

    __hash__ = None  # type: ignore[assignment]  # compared by value, not hashable

    def __repr__(self) -> str:
        values = zip(self.FIELDS, self.field_values(), strict=True)
        return f"{type(self).__name__}(" + ", ".join(f"{n}={v!r}" for n, v in values) + ")"
