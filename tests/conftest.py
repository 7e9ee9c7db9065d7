"""pytest's hooks for tests/ (what tests share is in tests/support.py: tests/guest has
its own conftest.py, and two modules named conftest cannot both be imported by name)."""
import os

import pytest


def pytest_collection_modifyitems(config, items):
    """Tests marked root load real BPF into this host's kernel: skip them,
    with the reason, when not root (CI runs as root and runs them all)."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: loads real BPF programs into this kernel")
    for item in items:
        if "root" in item.keywords or "lab" in item.keywords:
            item.add_marker(skip)
