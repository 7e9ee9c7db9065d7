"""A BCC workload that calls task-storage helpers from a raw tracepoint and
counts its own results per CPU (the ground truth lstrace is checked against).

On every getppid() of the given process it calls, on the current task:
  get(no flags)  -> NULL (no storage yet: not_found)
  get(F_CREATE)  -> creates (ok; one bpf_local_storage_update)
  delete         -> 0 (ok)
"""
import ctypes
import os

from bcc import BPF

TEXT = r"""
BPF_TASK_STORAGE(store, u64);
BPF_PERCPU_ARRAY(truth, u64, 6);   /* get calls, get NULL, create calls, create NULL,
                                      delete calls, delete errors */
static __always_inline void bump(int i) { u64 *v = truth.lookup(&i); if (v) (*v)++; }

RAW_TRACEPOINT_PROBE(sys_enter)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TGID || ctx->args[1] != 110 /* getppid */)
        return 0;
    struct task_struct *t = bpf_get_current_task_btf();
    bump(0);
    if (!store.task_storage_get(t, 0, 0))
        bump(1);
    bump(2);
    if (!store.task_storage_get(t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE))
        bump(3);
    bump(4);
    if (store.task_storage_delete(t))
        bump(5);
    return 0;
}
"""
FIELDS = ("get_calls", "get_null", "create_calls", "create_null", "delete_calls", "delete_err")


class HelperWorkload:
    def __init__(self):
        self.bpf = BPF(text=TEXT.encode(), cflags=[f"-DTGID={os.getpid()}"])
        self.libc = ctypes.CDLL(None)

    def run(self, cpu, n):
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            for _ in range(n):
                self.libc.getppid()
        finally:
            os.sched_setaffinity(0, old)

    def truth(self):
        """cpu -> {field: count}"""
        t = self.bpf[b"truth"]
        out = {}
        for i, name in enumerate(FIELDS):
            for cpu, v in enumerate(t[ctypes.c_int(i)]):
                out.setdefault(cpu, {})[name] = v
        return out

    def close(self):
        self.bpf.cleanup()
