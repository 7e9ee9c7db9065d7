"""Blind spots follow the kernel (issue 13 items 3 and 7): decided from BTF and
kallsyms facts, never from the version string.  The fake kernels carry the
facts read from the lab's real kernels (tests/lab, `lstrace.btf` prototypes):

  6.1.0-56     bpf_get_kprobe_info(event, fd_type, symbol, probe_offset, probe_addr,
               perf_type_tracepoint); no trace_call_bpf_faultable; no rqspinlock
  6.12.95      bpf_get_kprobe_info(..., missed, perf_type_tracepoint); no faultable;
               no rqspinlock
  6.18.44      (this host) check_deadlock_AA(lock), check_deadlock(lock, mask)
  7.3.4        trace_call_bpf_faultable; bpf_get_kprobe_info(..., missed, ...);
               check_deadlock_AA(lock), no check_deadlock
"""
import os

import pytest

from lstrace import plan
from lstrace.btf import Param, Prototype
from lstrace.snapshot import ProbeStatus

KPROBE_INFO = ("event", "fd_type", "symbol", "probe_offset", "probe_addr")


class FakeKernel:
    def __init__(self, funcs, kprobe_info_missed=None, kallsyms=(), preemption="voluntary"):
        self.funcs = set(funcs)
        self.preemption = preemption
        self.missed = kprobe_info_missed
        self.kallsyms = type("KS", (), {"range_of": lambda _s, n: (1, 2) if n in kallsyms
                                        else None})()
        self.btf = type("B", (), {"has_func": lambda _s, n: n in self.funcs})()

    def prototype(self, name):
        if name != "bpf_get_kprobe_info" or self.missed is None:
            return None
        names = KPROBE_INFO + (("missed",) if self.missed else ()) + ("perf_type_tracepoint",)
        return Prototype(name, "int", 4, tuple(Param(n, "void *", 8) for n in names))


KERNELS = {
    "6.1": FakeKernel({"trace_call_bpf"}, kprobe_info_missed=False),
    "6.12": FakeKernel({"trace_call_bpf"}, kprobe_info_missed=True),
    "6.18": FakeKernel({"trace_call_bpf", "resilient_queued_spin_lock_slowpath",
                        "check_deadlock_AA", "check_deadlock_ABBA", "check_deadlock"}),
    "7.3": FakeKernel({"trace_call_bpf", "trace_call_bpf_faultable",
                       "resilient_queued_spin_lock_slowpath", "check_deadlock_AA",
                       "check_deadlock_ABBA"}, kprobe_info_missed=True),
}

# what each kernel showed in the lab (README "How lstrace probes")
KPROBE = {"6.1": ("bpf_prog_active", "syscall_tracepoint_programs", "uncounted_misses"),
          "6.12": ("bpf_prog_active", "syscall_tracepoint_programs"),
          "7.3": ("bpf_prog_active",)}
RQSPINLOCK = {"6.18": ("pending_path", "pending_timeout"),
              "7.3": ("pending_path", "pending_timeout", "pre_queue_aa")}


@pytest.mark.parametrize("release", sorted(KPROBE))
def test_kprobe_blind_spots_per_kernel(release):
    facts = plan.blind_facts(KERNELS[release])
    assert plan.blind_spot_keys("task_storage_get", "helper", "kprobe", facts) == KPROBE[release]
    assert plan.blind_spot_keys("task_storage_get", "helper", "fentry", facts) == ()
    text = plan.blind_spot_details(KPROBE[release])
    assert "bpf_prog_active" in text and "6.1" in text     # doctor says the measured loss


@pytest.mark.parametrize("preemption,keys", [("voluntary", ()), ("none", ()),
                                             ("full", ("preempted_program",)),
                                             ("lazy", ("preempted_program",)),
                                             ("unknown", ("preempted_program",))])
def test_preemptible_kernels_skip_preempted_programs(preemption, keys):
    """fexit and syscall-exit programs run preemptible: on preempt=full/lazy the kernel
    skips a call returning while lstrace's program is preempted on that CPU (7.3 lazy,
    tests/guest/test_bpf_syscall.py); kprobe programs and contention_end never are."""
    facts = plan.blind_facts(FakeKernel({"trace_call_bpf"}, True, preemption=preemption))
    assert plan.blind_spot_keys("task_storage_get", "helper", "fentry", facts) == keys
    assert plan.blind_spot_keys("bpf_syscall", "tracepoint", "fentry", facts) == keys
    assert plan.blind_spot_keys("bpf_syscall", "tracepoint", "tracepoint", facts) == keys
    assert "preempted_program" not in plan.blind_spot_keys("task_storage_get", "helper",
                                                           "kprobe", facts)


@pytest.mark.parametrize("release", sorted(RQSPINLOCK))
def test_rqspinlock_blind_spots_per_kernel(release):
    facts = plan.blind_facts(KERNELS[release])
    assert plan.blind_spot_keys("rqspinlock", "tracepoint", "tracepoint", facts) == \
        RQSPINLOCK[release]


def test_kallsyms_decides_when_btf_lacks_static_functions():
    k = FakeKernel({"resilient_queued_spin_lock_slowpath"},
                   kallsyms={"check_deadlock_AA", "check_deadlock"})
    assert not plan.blind_facts(k).pre_queue_aa
    unknown = plan.blind_facts(FakeKernel({"resilient_queued_spin_lock_slowpath"}))
    assert unknown.pre_queue_aa                     # unknown: say the blind spot
    assert "assumed" in dict(unknown.how)["pre_queue_aa"]


def test_plan_keys_follow_a_mode_change_and_reach_the_status_text():
    facts = plan.blind_facts(KERNELS["6.12"])
    p = plan.ProbePlan("task_storage_get", "helper", mode="fentry", facts=facts)
    assert p.blind_spot_keys == () and p.blind_spots == ""
    p.mode = "kprobe"                               # fentry attach failed: kprobe fallback
    assert p.blind_spots == "blind spots: bpf_prog_active, syscall_tracepoint_programs"
    st = ProbeStatus(p.name, p.kind, p.mode, True, p.reason or p.blind_spots)
    assert st.blind_spot_keys == KPROBE["6.12"]


def test_this_kernel():
    """The host (6.18.44): the rqspinlock probe misses the pending path, not a
    pre-queue AA (check_deadlock() is still there)."""
    from lstrace.kernel import Kernel
    k = Kernel()
    if not k.has_btf or not k.has_func("resilient_queued_spin_lock_slowpath"):
        pytest.skip("no BTF or no rqspinlock on this kernel")
    facts = plan.blind_facts(k)
    keys = plan.blind_spot_keys("rqspinlock", "tracepoint", "tracepoint", facts)
    assert keys[:2] == ("pending_path", "pending_timeout")
    if os.uname().release.startswith("6.18."):
        assert keys == RQSPINLOCK["6.18"] and not facts.syscall_tp_faultable
