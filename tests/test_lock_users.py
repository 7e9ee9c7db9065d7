"""Each rqspinlock lock user's view (lstrace/probes/lock_users.py): decided
from what is attached and the kernel's generation; doctor prints it."""
import json
import os
import subprocess
import sys

import pytest

from lstrace.layout import CALLERS
from lstrace.probes.lock_users import LOCK_USERS, views


def by_user(attached, generation="C"):
    return {u: v for u, v, _how in views(attached, generation)}


def test_every_caller_but_other_is_a_lock_user():
    assert set(LOCK_USERS) == set(CALLERS) - {"other"}


def test_views_follow_what_is_attached():
    none = by_user({})
    assert set(none.values()) == {"none"}
    tp = by_user({"rqspinlock": (True, "tracepoint")})
    assert tp["res_spin_lock"] == tp["htab"] == tp["ringbuf"] == "partial"
    full = by_user({"rqspinlock": (True, "tracepoint"), "rqspinlock_kfunc": (True, "fentry"),
                    "htab_update": (True, "fentry"), "task_storage_get": (True, "fentry")})
    assert full["res_spin_lock"] == full["htab"] == full["local_storage"] == "exact"
    assert full["lpm_trie"] == "partial"
    # an inner probe alone is no boundary: its failures come out through an entry point
    assert by_user({"local_storage_update": (True, "fentry")})["local_storage"] == "none"
    # before 7.0 local storage has busy counters, no rqspinlock
    assert by_user({"task_storage_get": (True, "fentry")}, "B")["local_storage"] == "none"


@pytest.mark.root
def test_doctor_names_each_lock_users_view():
    if os.geteuid() != 0:
        pytest.skip("doctor's trial attaches need root")
    r = subprocess.run([sys.executable, "-m", "lstrace", "doctor", "--json"],
                       capture_output=True, text=True, timeout=120)
    users = {v["lock_user"]: v for v in json.loads(r.stdout)["lock_users"]}
    assert set(users) == set(LOCK_USERS)
    assert all(v["how"] for v in users.values())
    text = subprocess.run([sys.executable, "-m", "lstrace", "doctor"], capture_output=True,
                          text=True, timeout=120).stdout
    assert "rqspinlock failures by lock user" in text
    assert "AA / ABBA at lock:contention_end" in json.loads(r.stdout)["rqspinlock_kinds"]
