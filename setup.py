"""Marks the wheel as platform-specific when `make native` has compiled the hot modules: the
wheel then carries their extensions (listed in router/native-manifest.json) for this platform.
Without a build (the sdist, or a checkout that never ran `make native`) it is pure Python."""

import json
from pathlib import Path

from setuptools import setup
from setuptools.dist import Distribution

MANIFEST = Path(__file__).parent / "router" / "native-manifest.json"


def _compiled() -> bool:
    if not MANIFEST.exists():
        return False
    files = json.loads(MANIFEST.read_text()).get("files", [])
    return bool(files) and all((MANIFEST.parent.parent / name).exists() for name in files)


class NativeDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return _compiled()


setup(distclass=NativeDistribution)
