"""tests/guest run inside a kernel-lab guest only: tests/lab/test_guests.py boots each
kernel (tests/lab/run) and runs them there with LSTRACE_IN_LAB=1, failing on any skip
but a generation's own (its EXPECTED_SKIPS).  Anywhere else they skip, saying so."""
import os
from pathlib import Path

import pytest

IN_LAB = os.environ.get("LSTRACE_IN_LAB") == "1"
HERE = Path(__file__).resolve().parent
REASON = "runs inside a qemu guest; tests/lab/test_guests.py drives it"


def pytest_collection_modifyitems(config, items):
    if IN_LAB:
        return
    skip = pytest.mark.skip(reason=REASON)
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(skip)
