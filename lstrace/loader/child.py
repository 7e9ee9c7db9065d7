"""The loader child (`python -m lstrace.loader`): plans, compiles with BCC and
loads lstrace's programs, then hands their fds to the parent (see
lstrace/loader/__init__.py).  compile_bcc is the one compile path: the
child's, the tests' and the tools'."""
import os
import signal
import socket
import sys
import threading

from ..errors import LstraceError, NoProbeAttached, Unavailable
from .wire import error_reply, from_memfd, recv, send

PR_SET_PDEATHSIG = 1


def compile_bcc(text, cflags=(), headers=None, cls=None):
    """A BCC module compiled against `headers` (default: this kernel's, or the
    nearest), touching nothing on the host: lstrace's programs and the tests'
    own BCC programs compile the same way.  Imports BCC: never call it in the
    long-running process."""
    from .. import preflight
    from ..kernel import Kernel
    bcc = preflight.import_bcc()
    headers = headers or preflight.prepare_headers(Kernel())
    text = text.encode() if isinstance(text, str) else text
    with headers.for_bcc():
        return (cls or bcc.BPF)(text=text, cflags=list(cflags) + headers.cflags())


class _Laps:
    """LSTRACE_DEBUG=1: the child's start-up phases on stderr."""

    def __init__(self):
        import time
        self.clock, self.on = time.monotonic, bool(os.environ.get("LSTRACE_DEBUG"))
        self.t = self.clock()

    def __call__(self, what):
        if self.on:
            t = self.clock()
            print(f"lstrace loader: {what} {t - self.t:.3f} s", file=sys.stderr)
            self.t = t


class Child:
    def __init__(self, sock=None):
        self.sock = sock
        self.bpf = None
        self.bcc = None
        self.kernel = None

    def symbols(self):
        """The parent's Kallsyms ({"op": "kallsyms"} + a memfd)."""
        msg, fds = recv(self.sock)
        if msg is None:
            raise EOFError
        if msg.get("op") != "kallsyms" or len(fds) != 1:
            raise LstraceError(f"the BPF loader expected kallsyms, got {msg.get('op')!r}")
        return from_memfd(fds[0])

    def start(self, req):
        """Plan, build, compile and load: (the reply, its map and program fds)."""
        from .. import program
        lap = _Laps()
        kernel, headers, plans = self._plan(req, lap)
        latency = req["latency"]
        text, cflags, layout = program.build(kernel, plans, fallback=req["mode"] == "auto",
                                             latency=latency)
        lap("build")
        self._compile(text, cflags, headers)
        lap("compile")
        compiled = self._function_names()
        maps = self._map_fds()
        wanted = [pt for p in plans if p.available
                  for pt in program.attach_points(p, compiled, latency)]
        progs, errs, fds = self.load([(fn, kind, event) for kind, event, fn in wanted])
        lap("load")
        reply = {"plans": plans, "generation": kernel.generation, "layout": layout,
                 "compiled": compiled, "maps": list(maps), "progs": progs, "errors": errs}
        return reply, list(maps.values()) + fds

    def _plan(self, req, lap):
        """BCC, BTF, the parent's symbols, the headers and every probe's plan:
        (kernel, headers, plans); NoProbeAttached when no probe can attach."""
        from .. import plan as planmod
        from .. import preflight
        from ..kernel import Kernel
        self.bcc = preflight.import_bcc()
        kernel = self.kernel = Kernel(**req["kernel"])
        lap("import bcc")
        preflight.check_btf(kernel)
        lap("btf")
        # the parent parsed kallsyms meanwhile, in parallel (it keeps them for
        # stack resolution): the second message carries them in a memfd
        if self.sock is not None:        # (in-process, as tests use it: parsed here)
            kernel.__dict__["kallsyms"] = self.symbols()
        lap("kallsyms from the parent")
        headers = preflight.prepare_headers(kernel)
        plans = planmod.make_plan(kernel, req["probes"], req["mode"])
        lap("plan")
        if not any(p.available for p in plans):
            raise NoProbeAttached("no probe can attach on this kernel: " + "; ".join(
                f"{p.name}: {p.reason}" for p in plans))
        return kernel, headers, plans

    def _compile(self, text, cflags, headers):
        """Compile with BCC (nothing attached on load) and fill `callers`."""
        from ..probes import rqspinlock_kernel
        kallsyms = self.kernel.kallsyms

        class _BPF(self.bcc.BPF):
            def _trace_autoload(self):
                pass      # the parent attaches each program itself, one failure at a time

        # rqspinlock's caller ranges (a pass over every symbol) are computed while
        # BCC compiles: ctypes releases the GIL for the compile.  So its `callers`
        # table is declared in the core C and filled whatever is planned.
        ranges = []
        worker = threading.Thread(target=lambda: ranges.append(
            rqspinlock_kernel.caller_ranges(kallsyms)), daemon=True)
        worker.start()
        try:
            self.bpf = compile_bcc(text, cflags, headers, cls=_BPF)
        except Exception as e:
            raise Unavailable(f"BCC could not compile lstrace's BPF program against "
                              f"{headers.build}: {e}")
        finally:
            worker.join()
        self._fill_callers(ranges[0] if ranges else rqspinlock_kernel.caller_ranges(kallsyms),
                           rqspinlock_kernel.N_RANGES)

    def _function_names(self):
        lib, module = self.bcc.lib, self.bpf.module
        return [lib.bpf_function_name(module, i).decode()
                for i in range(lib.bpf_num_functions(module))]

    def _map_fds(self):
        """{map name: fd} of every table BCC created."""
        import ctypes
        lib, module = self.bcc.lib, self.bpf.module
        lib.bpf_num_tables.restype, lib.bpf_num_tables.argtypes = (ctypes.c_size_t,
                                                                   [ctypes.c_void_p])
        lib.bpf_table_name.restype = ctypes.c_char_p
        lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        maps = {}
        for i in range(lib.bpf_num_tables(module)):
            name = lib.bpf_table_name(module, i)
            fd = lib.bpf_table_fd(module, name)
            if fd >= 0:
                maps[name.decode()] = fd
        return maps

    def _fill_callers(self, ranges, n):
        import ctypes
        table = self.bpf[b"callers"]
        top = (1 << 64) - 1
        for i in range(n):
            start, end, cat = ranges[i] if i < len(ranges) else (top, top, 0)
            table[ctypes.c_int(i)] = table.Leaf(start, end, cat)

    def load(self, functions):
        """Load each (function, attach kind, event) once: (names, {name: error}, fds)."""
        from ..attach import PROG_TYPE
        names, errs, fds = [], {}, []
        for fn, kind, event in functions:
            if fn in names or fn in errs:
                continue
            try:
                if kind == "tp_btf":
                    fd = self._load_tp_btf(fn, event)
                else:
                    fd = self.bpf.load_func(fn.encode(), PROG_TYPE[kind]).fd
            except Exception as e:       # BCC raises bare Exceptions
                errs[fn] = str(e)
                continue
            names.append(fn)
            fds.append(fd)
        return names, errs, fds

    def _load_tp_btf(self, fn, event):
        """A tp_btf program: BCC's instructions, loaded with the raw tracepoint's
        BTF typedef as target (BCC looks a tracing program's target up as a
        function)."""
        import ctypes
        from .. import bpfsys
        from ..btf import TYPEDEF
        lib, name = self.bcc.lib, fn.encode()
        start = lib.bpf_function_start(self.bpf.module, name)
        if not start:
            raise LookupError(f"BCC compiled no function {fn}")
        insns = ctypes.string_at(start, lib.bpf_function_size(self.bpf.module, name))
        btf_id = self.kernel.btf.find(TYPEDEF, f"btf_trace_{event}")
        if btf_id is None:
            raise LookupError(f"no BTF typedef btf_trace_{event}")
        return bpfsys.prog_load(bpfsys.PROG_TYPE_TRACING, insns, name,
                                bpfsys.TRACE_RAW_TP, btf_id)

    def serve(self, sock):
        while True:
            req, fds = recv(sock)
            if req is None or req.get("op") == "exit":
                return
            if req.get("op") == "kallsyms":       # left over from a failed start
                for fd in fds:
                    os.close(fd)
                continue
            try:
                reply, fds = self._answer(req)
            except Exception as e:      # noqa: BLE001 - every failure goes back as a message
                if os.environ.get("LSTRACE_DEBUG"):
                    import traceback
                    traceback.print_exc()
                reply, fds = error_reply(e), []
            send(sock, reply, fds)

    def _answer(self, req):
        """(reply, fds) to a "start" or "load" request."""
        if req["op"] == "start":
            return self.start(req)
        if req["op"] == "load":
            if self.bpf is None:
                raise LstraceError("the BPF loader has no program loaded")
            names, errs, fds = self.load(req["functions"])
            return {"progs": names, "errors": errs}, fds
        raise LstraceError(f"unknown loader request {req.get('op')!r}")


def main(argv):
    import ctypes
    fd, parent = int(argv[1]), int(argv[2])
    # die with the parent; it may have died before the prctl took effect
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's to handle
    sock = socket.socket(fileno=fd)
    try:
        Child(sock).serve(sock)
    except (OSError, EOFError):
        pass                                          # the parent went away
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)      # no BCC atexit cleanup or LLVM teardown: the parent holds the fds
