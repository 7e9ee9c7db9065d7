"""Trial attaches of an empty program to one exact attach point (libbpf-tools'
fentry_can_attach idea): the planners of every probe use them.  None = it
attaches, else why not."""
from .. import bpfsys


def try_fentry(kernel, func):
    """fentry and fexit on `func` (both: a helper probe's entry and exit)."""
    fid = kernel.btf.func_id(func)
    for fexit in (False, True):
        why = bpfsys.trial_fentry(fid, fexit=fexit)
        if why:
            return f"{'fexit' if fexit else 'fentry'}: {why}"
    return None


def try_kprobe(func):
    for ret in (False, True):
        why = bpfsys.trial_kprobe(func, retprobe=ret)
        if why:
            return why
    return None


def first_mode(kernel, p, func, mode="auto"):
    """A function probe's mode: the first of fentry, kprobe (or the forced
    `mode`) whose trial attach on `func` works goes to p.mode; else p.tried
    and p.reason say why each did not.  True when one works."""
    for m in ("fentry", "kprobe") if mode == "auto" else (mode,):
        if m == "fentry":
            why = (try_fentry(kernel, func) if kernel.btf.func_id(func) is not None
                   else f"{func} is not in BTF")
        elif m == "kprobe":
            why = try_kprobe(func)
        else:
            why = f"{m} mode does not apply to function probes"
        if why is None:
            p.mode = m
            return True
        p.tried[m] = why
    p.reason = "; ".join(w if w.startswith(m) else f"{m}: {w}" for m, w in p.tried.items())
    return False


def try_events(kernel, p, events):
    """Every (category, event) exists and takes a raw tracepoint program; else
    p.reason says which does not.  True when all do."""
    for cat, ev in events:
        if not kernel.has_tracepoint(cat, ev):
            p.reason = f"tracepoint {cat}:{ev} does not exist on this kernel" + (
                "" if kernel.tracefs else " (tracefs not mounted and cannot be mounted)")
            return False
        if cat != "syscalls":   # syscall events are not raw tracepoints
            why = bpfsys.trial_raw_tracepoint(ev)
            if why:
                p.reason = f"raw tracepoint {ev}: {why}"
                return False
    return True
