"""Compile and load lstrace's BPF program in a short-lived child process.

BCC maps libbcc and LLVM (~90 MB of text, tens of MB of heap) into any
process that imports it.  The long-running process (serve, top, hist) never
does: it starts `python -m lstrace.loader` with one end of a Unix socketpair,
and the child

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
the LstraceError they are (class, message, exit code), never a traceback.
"""
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading

from . import errors
from .errors import LstraceError, NoProbeAttached, Unavailable

MAX_MSG = 1 << 20          # one pickled message (plans, layout, names: tens of KiB)
MAX_FDS = 250              # SCM_MAX_FD is 253 per message
PR_SET_PDEATHSIG = 1


# ---- the wire: one SOCK_SEQPACKET message = one pickled dict (+ fds)
def send(sock, obj, fds=()):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if len(fds) > MAX_FDS:
        raise ValueError(f"{len(fds)} fds in one message (at most {MAX_FDS})")
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def recv(sock):
    """(message, fds); (None, []) at EOF."""
    data, fds, flags, _ = socket.recv_fds(sock, MAX_MSG, MAX_FDS)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise LstraceError("loader message truncated")
    if not data:
        return None, fds
    return pickle.loads(data), fds


def _error(e):
    if isinstance(e, LstraceError):
        return {"error": {"type": type(e).__name__, "message": str(e),
                          "exit_code": e.exit_code}}
    return {"error": {"type": "LstraceError", "exit_code": errors.EXIT_FAILURE,
                      "message": f"the BPF loader failed: {type(e).__name__}: {e}"}}


def _raise(err):
    cls = getattr(errors, err["type"], LstraceError)
    if not (isinstance(cls, type) and issubclass(cls, LstraceError)):
        cls = LstraceError
    raise cls(err["message"], err["exit_code"])


def to_memfd(obj, name="lstrace"):
    """A memfd holding obj pickled: megabytes (kallsyms) do not fit one
    SOCK_SEQPACKET message (~200 KiB), an fd does."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def from_memfd(fd):
    """The object to_memfd wrote (closes fd)."""
    try:
        size = os.fstat(fd).st_size
        with open(fd, "rb", closefd=False) as f:
            f.seek(0)
            data = f.read(size)
        return pickle.loads(data)
    finally:
        os.close(fd)


# ---- the compile path (child, tests and tools)
def compile_bcc(text, cflags=(), headers=None, cls=None):
    """A BCC module compiled against `headers` (default: this kernel's, or the
    nearest), touching nothing on the host: lstrace's programs and the tests'
    own BCC programs compile the same way.  Imports BCC: never call it in the
    long-running process."""
    from . import preflight
    from .kernel import Kernel
    bcc = preflight.import_bcc()
    headers = headers or preflight.prepare_headers(Kernel())
    text = text.encode() if isinstance(text, str) else text
    with headers.for_bcc():
        return (cls or bcc.BPF)(text=text, cflags=list(cflags) + headers.cflags())


# ---- the child
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


class _Child:
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
        import ctypes
        lap = _Laps()

        from . import plan as planmod
        from . import preflight, program
        from .probes import rqspinlock_kernel
        from .kernel import Kernel
        bcc = self.bcc = preflight.import_bcc()
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
        latency = req["latency"]
        text, cflags, layout = program.build(kernel, plans, fallback=req["mode"] == "auto",
                                             latency=latency)
        lap("build")

        class _BPF(bcc.BPF):
            def _trace_autoload(self):
                pass      # the parent attaches each program itself, one failure at a time

        # rqspinlock's caller ranges (a pass over every symbol) are computed while
        # BCC compiles: ctypes releases the GIL for the compile.  So its `callers`
        # table is declared in the core C and filled whatever is planned.
        ranges = []
        worker = threading.Thread(target=lambda: ranges.append(
            rqspinlock_kernel.caller_ranges(kernel.kallsyms)), daemon=True)
        worker.start()
        try:
            self.bpf = compile_bcc(text, cflags, headers, cls=_BPF)
        except Exception as e:
            raise Unavailable(f"BCC could not compile lstrace's BPF program against "
                              f"{headers.build}: {e}")
        finally:
            worker.join()
        lap("compile")
        module = self.bpf.module
        compiled = [bcc.lib.bpf_function_name(module, i).decode()
                    for i in range(bcc.lib.bpf_num_functions(module))]
        self._fill_callers(
            ranges[0] if ranges else rqspinlock_kernel.caller_ranges(kernel.kallsyms),
            rqspinlock_kernel.N_RANGES)
        lib = bcc.lib
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
        wanted = [pt for p in plans if p.available
                  for pt in program.attach_points(p, compiled, latency)]
        progs, errs, fds = self.load([(fn, kind, event) for kind, event, fn in wanted])
        lap("load")
        reply = {"plans": plans, "generation": kernel.generation, "layout": layout,
                 "compiled": compiled, "maps": list(maps), "progs": progs, "errors": errs}
        return reply, list(maps.values()) + fds

    def _fill_callers(self, ranges, n):
        import ctypes
        table = self.bpf[b"callers"]
        top = (1 << 64) - 1
        for i in range(n):
            start, end, cat = ranges[i] if i < len(ranges) else (top, top, 0)
            table[ctypes.c_int(i)] = table.Leaf(start, end, cat)

    def load(self, functions):
        """Load each (function, attach kind, event) once: (names, {name: error}, fds)."""
        from .attach import PROG_TYPE
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
        from . import bpfsys
        from .btf import TYPEDEF
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
                if req["op"] == "start":
                    reply, fds = self.start(req)
                elif req["op"] == "load":
                    if self.bpf is None:
                        raise LstraceError("the BPF loader has no program loaded")
                    names, errs, fds = self.load(req["functions"])
                    reply = {"progs": names, "errors": errs}
                else:
                    raise LstraceError(f"unknown loader request {req.get('op')!r}")
            except Exception as e:      # noqa: BLE001 - every failure goes back as a message
                if os.environ.get("LSTRACE_DEBUG"):
                    import traceback
                    traceback.print_exc()
                reply, fds = _error(e), []
            send(sock, reply, fds)


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
        _Child(sock).serve(sock)
    except (OSError, EOFError):
        pass                                          # the parent went away
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)      # no BCC atexit cleanup or LLVM teardown: the parent holds the fds


# ---- the parent's side
def _pythonpath():
    """The directory lstrace is imported from, first on the child's path."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rest = os.environ.get("PYTHONPATH")
    return here + (os.pathsep + rest if rest else "")


class Loader:
    """The parent's handle on one loader child."""

    def __init__(self):
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lstrace.loader", str(child.fileno()), str(os.getpid())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": _pythonpath()})
        except BaseException:
            self.sock.close()
            raise
        finally:
            child.close()

    @property
    def alive(self):
        return self.sock is not None

    def request(self, msg):
        """Send one request; (reply, fds).  Raises the child's LstraceError."""
        self.ask(msg)
        return self.answer()

    def ask(self, msg):
        """Send a request; answer() waits for its reply (do other work in between)."""
        if self.sock is None:
            raise LstraceError("the BPF loader has exited")
        try:
            send(self.sock, msg)
        except OSError:
            pass          # the child is gone: answer() says how

    def send_symbols(self, kallsyms):
        """The second message of a start: this process's Kallsyms for the child."""
        fd = to_memfd(kallsyms, "lstrace-kallsyms")
        try:
            send(self.sock, {"op": "kallsyms"}, [fd])
        except OSError:
            pass          # the child is gone: answer() says how
        finally:
            os.close(fd)

    def answer(self):
        try:
            reply, fds = recv(self.sock)
        except OSError as e:
            reply, fds = None, []
            why = e.strerror
        else:
            why = "no reply"
        if reply is None:
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                rc = None
            self.kill()
            if rc is not None and rc < 0:
                died = f"was killed by {signal.Signals(-rc).name}"
            else:
                died = f"exited ({'exit code ' + str(rc) if rc is not None else why})"
            raise LstraceError(f"the BPF loader process {died} before lstrace's programs "
                               "were loaded")
        if "error" in reply:
            _raise(reply["error"])
        return reply, fds

    def close(self):
        """Tell the child it is done and reap it (killed if it does not go)."""
        if self.sock is not None:
            try:
                send(self.sock, {"op": "exit"})
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        if self.proc.poll() is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.close()


if __name__ == "__main__":
    main(sys.argv)
