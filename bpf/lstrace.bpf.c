// SPDX-License-Identifier: GPL-2.0
/* lstrace: per-CPU health counters for BPF local storage and rqspinlocks.
 *
 * BCC C.  lstrace/program.py assembles the program: this head, the core
 * fragments every probe shares (bpf/core/, in program.CORE_FRAGMENTS order:
 * per-CPU state, guard, histogram, per-CPU variables, slot search, events),
 * then the C of each planned probe (bpf/probes/<name>.bpf.c and its glue
 * generated from lstrace/probes/: the helper family's programs per function,
 * fentry/fexit or kprobe/kretprobe, with prototypes read from BTF).  Every
 * dimension, code and kernel offset comes from Python as a #define or -D flag
 * (lstrace/layout.py, each probe module's defines(), BTF): no number shared
 * with Python is spelled here (tests/test_c_facts.py).
 *
 * Safety on lock paths: only per-CPU arrays and a plain array (no hash or
 * stack maps: they take rqspinlocks), no helpers that take locks, and a
 * per-CPU nesting guard so a program can never recurse into itself without
 * bound.  Counters are bumped with atomic adds: a nested program on the same
 * CPU (IRQ, preemption) must not lose an increment.
 */
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf.h>

/* struct counters (lstrace/layout.py), struct event and struct ring
 * (lstrace/decode.py) are generated from Python, which decodes them:
 * program.build puts them here. */
/* @GENERATED@ */
BPF_PERCPU_ARRAY(counters, struct counters, 1);
