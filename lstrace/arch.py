"""Everything lstrace needs that differs by CPU architecture, in one table keyed
by `uname -m`.

Syscall numbers (x86-64 has its own table; arm64 uses the generic one of
include/uapi/asm-generic/unistd.h), the syscall wrappers' names (the
kernel's SYSCALL_DEFINE prefix, arch/*/include/asm/syscall_wrapper.h), where
the saved user registers keep the syscall's arguments and number (struct
pt_regs members; their offsets come from BTF), the kernel's arch/ directory
(headers) and the target macro libbpf's bpf_tracing.h wants.  Nothing else in
lstrace names an architecture: an architecture not in the table is refused
with one line (Unavailable, exit 69) before any syscall is made, never served
with another's numbers.
"""
import os
from dataclasses import dataclass

from .errors import Unavailable


@dataclass(frozen=True)
class Arch:
    machine: str            # uname -m
    debian: str             # Debian's architecture name (dpkg, the lab's packages)
    kernel_dir: str         # the kernel's arch/ directory (headers' generated includes)
    target: str             # -D__TARGET_ARCH_<target> for libbpf's bpf_tracing.h
    nr_bpf: int             # __NR_bpf
    nr_perf_event_open: int
    nr_pidfd_open: int
    syscall_prefix: str     # SYSCALL_DEFINE's wrapper: <prefix>bpf takes a struct pt_regs *
    regs_arg0: tuple        # (pt_regs member, byte offset in it) of the 1st syscall argument
    regs_arg1: tuple        # ... of the 2nd
    regs_nr: str            # pt_regs member with the syscall number (still set at exit)
    entry_frames: tuple     # bpf()'s syscall entry frames on a kernel stack (name prefixes)
    tick: tuple             # (category, event): a tracepoint in every timer interrupt

    def syscall_wrapper(self, name):
        return self.syscall_prefix + name


TABLE = {a.machine: a for a in (
    Arch(machine="x86_64", debian="amd64", kernel_dir="x86", target="x86",
         nr_bpf=321, nr_perf_event_open=298, nr_pidfd_open=434,
         syscall_prefix="__x64_sys_", regs_arg0=("di", 0), regs_arg1=("si", 0),
         regs_nr="orig_ax",
         entry_frames=("__x64_sys_bpf", "do_syscall", "entry_SYSCALL"),
         tick=("irq_vectors", "local_timer_entry")),
    # arm64: user x0..x30 are pt_regs.regs[31] (u64 each); orig_x0 keeps x0 as it was at
    # entry (regs[0] is overwritten by the return value), syscallno the number
    Arch(machine="aarch64", debian="arm64", kernel_dir="arm64", target="arm64",
         nr_bpf=280, nr_perf_event_open=241, nr_pidfd_open=434,
         syscall_prefix="__arm64_sys_", regs_arg0=("orig_x0", 0), regs_arg1=("regs", 8),
         regs_nr="syscallno",
         entry_frames=("__arm64_sys_bpf", "invoke_syscall", "el0_svc", "do_el0_svc",
                       "el0t_64_sync"),
         # irq_vectors is x86's; every expiry of an hrtimer (the tick is one) runs this
         tick=("timer", "hrtimer_expire_entry")),
)}


def machine():
    return os.uname().machine


def lookup(name=None):
    """The table's entry for `uname -m` (or name); None when it has none."""
    return TABLE.get(machine() if name is None else name)


def unsupported_message(name):
    return (f"unsupported architecture {name!r} (uname -m): lstrace knows the syscall numbers "
            f"and registers of {', '.join(sorted(TABLE))} only")


def current():
    """This machine's entry; Unavailable (exit 69) on an architecture the table lacks."""
    name = machine()
    a = TABLE.get(name)
    if a is None:
        raise Unavailable(unsupported_message(name))
    return a


def all_entry_frames():
    """Every architecture's syscall entry frames (stack decoding filters them out)."""
    return tuple(dict.fromkeys(f for a in TABLE.values() for f in a.entry_frames))
