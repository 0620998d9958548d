"""Records of the payments system on `payments.events` (key: order id).

A chargeback (`support.payment.chargeback`) is the system's `chargeback` dispute action: it
opens a dispute on its order (the buyer's bank has already reversed the charge, and the
platform judges it like any other dispute), or escalates the order's open dispute to platform
review (`router.disputes.machine`). Its CloudEvents `id` is the idempotency key: the same
chargeback twice acts once.

    {"specversion": "1.0", "id": "cb-81f2", "source": "urn:payments", "type":
     "support.payment.chargeback", "subject": "o-1001",
     "data": {"chargeback_id": "cb-81f2", "order_id": "o-1001", "buyer_id": "buyer-7",
              "vendor_id": "acme-audio", "amount": "40.00", "currency": "EUR",
              "reason_code": "unauthorised_charge"}}
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.claim import Amount, Category, Currency, ReasonCode
from schemas.dispute import ChargebackId, OrderId, PartyId
from schemas.envelope import CloudEvent
from schemas.message import VendorId

PAYMENT_CHARGEBACK = "support.payment.chargeback"


class Chargeback(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    chargeback_id: ChargebackId
    order_id: OrderId
    buyer_id: PartyId
    vendor_id: VendorId
    amount: Amount
    currency: Currency
    reason_code: ReasonCode = ReasonCode.UNAUTHORISED_CHARGE
    category: Category | None = None
    reported_at: AwareDatetime | None = None


class ChargebackEvent(CloudEvent[Chargeback]):
    """A whole `support.payment.chargeback` record as it sits on `payments.events`."""
