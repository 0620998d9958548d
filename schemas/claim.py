"""What a buyer's claim on an order is made of: why, how much, in which currency, for what.

Shared by the dispute commands and events (`schemas.dispute`), chargebacks
(`schemas.payment`) and a routing rule's `open_dispute` on a routing decision
(`schemas.ticket`), which is why it sits apart from all three.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field

# Larger claims are typos or attacks; a real order is far below.
MAX_AMOUNT = Decimal("1000000000")

Amount = Annotated[Decimal, Field(gt=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Category = Annotated[str, Field(min_length=1, max_length=128)]


class ReasonCode(StrEnum):
    ITEM_NOT_RECEIVED = "item_not_received"
    NOT_AS_DESCRIBED = "not_as_described"
    DAMAGED = "damaged"
    UNAUTHORISED_CHARGE = "unauthorised_charge"
