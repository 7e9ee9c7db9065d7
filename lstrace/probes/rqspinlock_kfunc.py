"""rqspinlock_kfunc: every failed bpf_res_spin_lock*() kfunc (BPF programs' own
rqspinlocks), exactly, per CPU, errno and kind, with the failing program.

rqspinlock.c is notrace: the slow path and the kfuncs cannot be probed, and
lock:contention_end misses every AA the kernel finds before queueing (6.19+)
and every pending-path failure.  But since 6.17 (ecec5b5743bf) each kfunc
failure is reported to the calling program's stderr stream, and the report's
lines pass through the traceable __bpf_stream_push_str() (kernel/bpf/stream.c).
One program there (fentry, else kprobe) reads each staged line, never the
stream itself, and counts on the failure path only: the kfunc's success path
never reaches it.  Its counts join lstrace_rqspinlock_failures_total with
caller="res_spin_lock"; contention_end then leaves that caller to it.
C: bpf/probes/rqspinlock_kfunc.bpf.c.
"""
import struct

from ..layout import RQ_ERRNOS, RQ_KINDS
from . import trial
from .bcc import KFUNC_PREFIXES, kfunc_name
from .rqspinlock_kernel import held_defines
from .tracepoint import TracepointProbe

NAME = "rqspinlock_kfunc"
FUNC = "__bpf_stream_push_str"
KFUNC = "bpf_res_spin_lock"
PROBE = TracepointProbe(NAME, (), "failed bpf_res_spin_lock kfuncs, from their stderr "
                                  "stream reports (6.17+), by errno and kind")
NAMES = (NAME,)
ORDER = 30
COUNTS = ("rq_failures",)
CALLER = "res_spin_lock"          # its label in lstrace_rqspinlock_failures_total

# The report's lines (kernel/bpf/rqspinlock.c bpf_prog_report_rqspinlock_violation);
# the C matches their first words, generated here.
LINE_DEADLOCK = b"ERROR: AA or ABBA deadlock detected for bpf_res_spin_lock"
LINE_TIMEOUT = b"ERROR: Timeout detected for bpf_res_spin_lock"
LINE_ATTEMPTED = b"Attempted lock   = "
LINE_TOTAL = b"Total held locks = "
LINE_HELD = b"Held lock[NN] = "
HEAD_WORDS = 6              # 48 bytes: up to "...detected for bpf_res_s" of the deadlock line
VAL_WORDS = 3               # "0x" + 16 hex digits + "\n"


def plan(kernel, p, mode="auto"):
    if not kernel.has_func(KFUNC):
        p.reason = f"{KFUNC} does not exist on this kernel (rqspinlock kfuncs: 6.15+)"
        return p
    if not kernel.kallsyms.range_of(FUNC):
        p.reason = (f"{FUNC} does not exist on this kernel (stream reports of kfunc "
                    "failures: 6.17+): lock:contention_end is the kfuncs' only view")
        return p
    if trial.first_mode(kernel, p, FUNC, mode):
        p.func = FUNC
    return p


# No blind spot of its own: a line it cannot place (a report nested by an IRQ,
# a line the kernel could not format because its per-CPU printk buffers were
# all in use) still counts its failure, with kind "unknown".


# ---- counters: failures by errno x kind (its caller is always res_spin_lock)
def blocks(nprobes):
    return [("rqk", (("N_RQ_ERRNO", len(RQ_ERRNOS)), ("N_RQ_KIND", len(RQ_KINDS))))]


# ---- C
C_FRAGMENT = "rqspinlock_kfunc.bpf.c"


def _words(text, n):
    """The first n little-endian u64 words of text (zero-padded), as C literals."""
    raw = text[:n * 8].ljust(n * 8, b"\0")
    return [f"{w:#x}ULL" for w in struct.unpack(f"<{n}Q", raw)]


def _match(text, n):
    """C: the line's words w[0..n) equal text's (n whole words of it)."""
    return "(" + " && ".join(f"(w)[{i}] == {v}" for i, v in enumerate(_words(text, n))) + ")"


def defines(kernel, plans):
    nr_held = held_defines(kernel.btf)["RQ_NR_HELD"]
    return {"RQ_KFUNC_REPORTS": 1,
            "RQK_HEAD_WORDS": HEAD_WORDS, "RQK_VAL_WORDS": VAL_WORDS,
            "RQK_NR_HELD": nr_held,
            "RQK_ATTEMPTED_OFF": len(LINE_ATTEMPTED), "RQK_TOTAL_OFF": len(LINE_TOTAL),
            "RQK_HELD_OFF": len(LINE_HELD),
            "RQK_IS_DEADLOCK(w)": _match(LINE_DEADLOCK, HEAD_WORDS),
            "RQK_IS_TIMEOUT(w)": _match(LINE_TIMEOUT, len(LINE_TIMEOUT) // 8),
            "RQK_IS_ATTEMPTED(w)": _match(LINE_ATTEMPTED, 2),
            "RQK_IS_TOTAL(w)": _match(LINE_TOTAL, 2),
            "RQK_IS_HELD(w)": _match(LINE_HELD, 1)}


def glue(kernel, plans, latency=False, fallback=False):
    out = []
    for p in plans:
        if p.mode == "fentry":
            out.append(f"KFUNC_PROBE({FUNC}, u64 log, u64 str, int len)\n"
                       f"{{ return rqk_line(ctx, str, len > 0 ? len : 0); }}\n")
        if p.mode == "kprobe" or fallback:      # fallback: an fentry that may not attach
            out.append("int lst_kp_rqk(struct pt_regs *ctx)\n"
                       "{ int len = PT_REGS_PARM3(ctx);\n"
                       "  return rqk_line(ctx, PT_REGS_PARM2(ctx), len > 0 ? len : 0); }\n")
    return out


# ---- attach points
MISSED_CALLS = True     # its one program's recursion_misses are report lines it missed


def attach_points(plan, compiled, latency=False):
    if plan.mode == "fentry":
        return [("kfunc", FUNC, kfunc_name(compiled, KFUNC_PREFIXES[0], FUNC))]
    return [("kprobe", FUNC, "lst_kp_rqk")]


def fall_back(plan, why, mode="auto"):
    """An fentry that did not attach after a good trial: the kprobe."""
    if plan.mode != "fentry":
        return False
    plan.tried["fentry"] = why
    plan.mode, plan.reason = "kprobe", ""
    return True


# ---- decode: into the rqspinlock failures, caller res_spin_lock
def decode(snap, cpu, lay, words, attached, latency):
    if NAME not in attached:
        return
    rqk = lay.block(words, "rqk")
    nk = len(RQ_KINDS)
    for ei, err in enumerate(RQ_ERRNOS):
        for ki, kind in enumerate(RQ_KINDS):
            n = rqk[ei * nk + ki]
            if n:
                key = (cpu, err, kind, CALLER)
                snap.rq_failures[key] = snap.rq_failures.get(key, 0) + n


# ---- top: its failures are in the rqspinlock row and section (caller res_spin_lock)
def top_row(st, cur, delta, rate, r):
    mine = {k: n for k, n in cur.rq_failures.items() if k[3] == CALLER}
    r["calls_per_s"] = r["calls_total"] = None
    r["failures_per_s"] = rate(sum(n for k, n in delta.rq_failures.items() if k[3] == CALLER))
    r["failures_total"] = sum(mine.values())
    r["deadlock_total"] = sum(n for k, n in mine.items() if k[1] == "EDEADLK")
    r["timeout_total"] = sum(n for k, n in mine.items() if k[1] == "ETIMEDOUT")


# ---- hist
NO_HIST = "rqspinlock_kfunc counts failures only, it has no latency histogram"
