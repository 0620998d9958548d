"""SLA policies, business calendars, per-ticket clocks and the deadline index (pure core)."""
