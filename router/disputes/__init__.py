"""Disputes between a buyer and a seller, judged by the platform (pure core).

Modules: `machine` (the transition table, the stored `Dispute`, `apply` and `fire_due`),
`policy` (the YAML policy file: windows, buyer protection, buyer silence), `render` (a
decision's events as CloudEvents records). `router/stages/disputes.py` runs it on records.
"""
