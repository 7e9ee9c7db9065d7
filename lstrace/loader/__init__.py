"""Compile and load lstrace's BPF program in a short-lived child process.

BCC maps libbcc and LLVM (~90 MB of text, tens of MB of heap) into any
process that imports it.  The long-running process (serve, top, hist) never
does: it starts `python -m lstrace.loader` (parent.Loader) with one end of a
Unix socketpair, and the child (child.Child)

  1. checks BCC, BTF and kernel headers (lstrace.preflight), takes the
     kernel's symbols the parent parsed meanwhile (a memfd: the parent keeps
     them to resolve stacks), plans every probe (trial attaches,
     lstrace.plan) and builds the program text (program.build);
  2. compiles it with BCC (compile_bcc: the one compile path, tests use it
     too), fills the `callers` table, loads every program the planned probes
     attach (program.attach_points) with its program type;
  3. sends the map and program fds (SCM_RIGHTS) with the plans, the layout,
     the generation and the compiled function names, and then answers
     requests for more programs (the kprobe programs of a probe whose fentry
     attach fails) until the parent says it is done or goes away.

The child never attaches anything: the parent does (lstrace.attach), so a
SIGKILL of either process leaves nothing attached.  The child dies with its
parent (PR_SET_PDEATHSIG, and EOF on the socket).  Its errors travel back as
the LstraceError they are (class, message, exit code), never a traceback
(wire: the messages, fds and memfds between the two).
"""
from .child import compile_bcc
from .parent import Loader

__all__ = ["Loader", "compile_bcc"]
