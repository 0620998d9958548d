"""Connector-side I/O: what a Python connector uses to put messages on the channel topics."""
