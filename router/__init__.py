"""The domain core: pure, synchronous, no Kafka. Takes records and a clock, returns decisions."""

import os as _os

if _os.environ.get("ROUTER_NATIVE", "").lower() in ("0", "off", "false", "no"):
    from router.native import prefer_sources as _prefer_sources

    _prefer_sources()  # the pure-Python modules even where `make native` built extensions
