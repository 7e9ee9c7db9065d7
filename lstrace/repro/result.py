"""CaseResult: the ground truth one case measured, per CPU."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .stats import add, zero


@dataclass
class CaseResult:
    """Counts made by the workload itself, per CPU (keys are CPU numbers).

    per_cpu[cpu]   : {"calls","ok","busy","deadlock","timeout","nomem","not_found","other"}
                     summed over every helper/kfunc/syscall the case exercised.
    groups[g][cpu] : the same counts per helper, kfunc or syscall command
                     (e.g. "bpf_task_storage_get", "bpf_res_spin_lock:aa").
    functions      : kernel functions really executed (e.g. the _recur variant
                     the verifier picked), for tracers to probe.
    errnos[cpu][cmd][errno name] : syscall-errors only.
    visible[cpu]   : rqspinlock only: the workload's failures that reached
                     lock:contention_end with ret < 0 (queued slow path), as its
                     own raw_tp on that tracepoint counted them.
    failures       : rqspinlock only: {"made": {cpu: {kind: n, "total": n}},
                     "visible": {cpu: {kind: n, "total": n}}, "not_visible": {cpu: n},
                     "blind_spot": why the difference never reaches the tracepoint}:
                     what the workload made vs what a contention_end observer saw.
    expected       : what the case was built to produce (helper-calls, syscall-errors).
    """
    name: str
    runnable: bool = True
    reason: str = ""
    cpus: List[int] = field(default_factory=list)
    duration: float = 0.0
    params: dict = field(default_factory=dict)
    functions: List[str] = field(default_factory=list)
    per_cpu: Dict[int, dict] = field(default_factory=dict)
    groups: Dict[str, Dict[int, dict]] = field(default_factory=dict)
    errnos: Dict[int, dict] = field(default_factory=dict)
    visible: Dict[int, int] = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    affected: Optional[bool] = None
    verdict: str = ""

    def sum_groups(self):
        """per_cpu := sum of groups (cases call this after filling groups)."""
        self.per_cpu = {cpu: zero() for cpu in self.cpus}
        for per in self.groups.values():
            for cpu, counts in per.items():
                add(self.per_cpu.setdefault(cpu, zero()), counts)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        # JSON object keys are strings; keep CPU numbers readable
        d["per_cpu"] = {str(k): v for k, v in self.per_cpu.items()}
        d["groups"] = {g: {str(k): v for k, v in per.items()} for g, per in self.groups.items()}
        d["errnos"] = {str(k): v for k, v in self.errnos.items()}
        d["visible"] = {str(k): v for k, v in self.visible.items()}
        d["failures"] = {k: ({str(c): n for c, n in v.items()} if isinstance(v, dict) else v)
                         for k, v in self.failures.items()}
        return d
