"""The domain core: pure, synchronous, no Kafka. Takes records and a clock, returns decisions."""

import sys as _sys

from router import native as _native

if _native.sources_requested():
    _native.prefer_sources()  # the pure-Python modules even where `make native` built extensions
elif "stale" in _native.status().values():
    # An extension built before its source's last edit would run old code: run the sources.
    print(
        "router: native build older than its sources; running the Python sources "
        "(`make native` rebuilds)",
        file=_sys.stderr,
    )
    _native.prefer_sources()
