"""The lean daemon (issue 10): BCC compiles and loads in a short-lived child
(lstrace.loader); the long-running process holds the fds, attaches through
bpf()/perf_event_open (lstrace.attach) and never maps libbcc or LLVM.  Errors
in the child come back as the LstraceError they are, never a traceback."""
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from support import ROOT, free_port, left_over, lstrace_cmd, lstrace_prog_ids, wait_for
from lstrace import errors
from lstrace.loader import child, wire

# issue 10's target for `lstrace serve` once it serves (was 199 MB / 110 MB with BCC resident)
RSS_LIMIT_MB, ANON_LIMIT_MB = 60, 30
BCC_LIBS = ("libbcc", "LLVM", "libclang")


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def loader_children(pid):
    """Live `python -m lstrace.loader` children of process `pid`."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids = [int(c) for c in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/cmdline", "rb") as f:
                    if b"lstrace.loader" in f.read():
                        out.append(kid)
            except OSError:
                pass
    return out


# ---- the wire, without root
def test_child_errors_come_back_as_the_same_lstrace_error():
    for err in (errors.Unavailable("BCC is not installed ..."),
                errors.NoProbeAttached("no probe can attach on this kernel: x"),
                errors.PermissionDenied("needs root")):
        with pytest.raises(type(err)) as got:
            wire.raise_error(wire.error_reply(err)["error"])
        assert str(got.value) == str(err) and got.value.exit_code == err.exit_code
    with pytest.raises(errors.LstraceError) as got:
        wire.raise_error(wire.error_reply(KeyError("oops"))["error"])
    assert "the BPF loader failed: KeyError" in str(got.value)
    assert got.value.exit_code == errors.EXIT_FAILURE


def test_fds_and_objects_cross_the_socketpair():
    import socket
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        wire.send(a, {"progs": ["lst_x"], "n": 1}, [w])
        msg, fds = wire.recv(b)
        assert msg == {"progs": ["lst_x"], "n": 1} and len(fds) == 1
        os.write(fds[0], b"hi")
        assert os.read(r, 2) == b"hi"
        os.close(fds[0])
        a.close()
        assert wire.recv(b) == (None, [])          # EOF: the peer is gone
    finally:
        for fd in (r, w):
            os.close(fd)
        b.close()


def test_kallsyms_cross_in_a_memfd(tmp_path):
    from lstrace.kallsyms import Kallsyms
    (tmp_path / "kallsyms").write_text(
        "ffffffff81000000 T _stext\nffffffff81000100 T htab_map_update_elem\n"
        "ffffffff81000400 t bpf_res_spin_lock\nffffffff83c00000 D rqspinlock_held_locks\n"
        "ffffffffc00238d0 t bpf_prog_ea71044608b1aceb_lst_x\t[bpf]\n")
    ks = wire.from_memfd(wire.to_memfd(Kallsyms.load(tmp_path / "kallsyms")))
    assert ks.resolve(0xffffffff81000110) == ("htab_map_update_elem", 0x10)
    assert ks.resolve(0xffffffffc00238d8) == ("bpf_prog_ea71044608b1aceb_lst_x", 8)
    assert ks.data["rqspinlock_held_locks"] == 0xffffffff83c00000
    assert ks.range_of("htab_map_update_elem") == (0xffffffff81000100, 0xffffffff81000400)


class FakeLoader:
    """A loader child's replies without a child: fds are /dev/null."""
    requests = []

    def __init__(self):
        self.alive = True

    @staticmethod
    def fds(n):
        return [os.open("/dev/null", os.O_RDONLY) for _ in range(n)]

    def ask(self, msg):
        FakeLoader.requests.append(msg)

    def send_symbols(self, kallsyms):
        pass

    def answer(self):
        from lstrace.counters import Layout
        from lstrace.plan import ProbePlan
        plans = [ProbePlan("task_storage_get", "helper", mode="fentry",
                           func="bpf_task_storage_get")]
        compiled = ["kfunc__bpf_task_storage_get", "kretfunc__bpf_task_storage_get",
                    "lst_kp_task_storage_get", "lst_krp_task_storage_get"]
        return ({"plans": plans, "layout": Layout(1), "compiled": compiled, "generation": "B",
                 "maps": ["counters"], "progs": ["kretfunc__bpf_task_storage_get"],
                 "errors": {}}, self.fds(2))

    def request(self, msg):
        FakeLoader.requests.append(msg)
        names = [fn for fn, *_ in msg["functions"]]
        return {"progs": names, "errors": {}}, self.fds(len(names))

    def close(self):
        self.alive = False

    kill = close


def _session_whose_attach_fails(monkeypatch, tmp_path, loader, failing_kind, why, **kw):
    """A Session on `loader` whose attaches of `failing_kind` fail with `why`;
    returns it (not started) and the list of (kind, event) attached."""
    from lstrace import attach, session
    from lstrace.kernel import Kernel
    attached = []

    def fake_attach(kind, event, fd):
        if kind == failing_kind:
            raise attach.AttachError(f"{kind} {event}: {why}")
        attached.append((kind, event))
        return os.open("/dev/null", os.O_RDONLY)

    (tmp_path / "kallsyms").write_text("ffffffff81000000 T _stext\n")
    FakeLoader.requests = []
    monkeypatch.setattr(session, "check_privileges", lambda: None)
    monkeypatch.setattr(session.loadermod, "Loader", loader)
    monkeypatch.setattr(session.attachmod, "attach", fake_attach)
    return session.Session(kernel=Kernel(kallsyms_path=str(tmp_path / "kallsyms")), **kw), attached


def test_fentry_attach_failure_falls_back_to_kprobe_programs_loaded_on_demand(
        monkeypatch, tmp_path):
    """auto mode: a helper whose fentry attach fails after a good trial falls back
    to kprobe; its kprobe programs are loaded then, by the still-running child."""
    from lstrace.probes import trial
    monkeypatch.setattr(trial, "try_kprobe", lambda func: None)
    s, attached = _session_whose_attach_fails(monkeypatch, tmp_path, FakeLoader, "kretfunc",
                                              "Operation not permitted")
    s.start()
    try:
        p = s.plans[0]
        assert p.mode == "kprobe" and p.tried["fentry"].startswith("kretfunc"), (p.mode, p.tried)
        assert attached == [("kprobe", "bpf_task_storage_get"),
                            ("kretprobe", "bpf_task_storage_get")]
        assert FakeLoader.requests[1] == {"op": "load", "functions": [
            ("lst_kp_task_storage_get", "kprobe", "bpf_task_storage_get"),
            ("lst_krp_task_storage_get", "kretprobe", "bpf_task_storage_get")]}
        assert s.kernel.generation == "B"
    finally:
        s.stop()


class FakeSyscallLoader(FakeLoader):
    def answer(self):
        from lstrace.counters import Layout
        from lstrace.plan import ProbePlan
        from lstrace.probes import bpf_syscall
        plans = [ProbePlan("bpf_syscall", "tracepoint", mode="tracepoint",
                           func=bpf_syscall.TP_BTF)]
        compiled = ["lst_sys_exit_btf", "lst_sys_exit"]
        return ({"plans": plans, "layout": Layout(1), "compiled": compiled, "generation": "C",
                 "maps": ["counters"], "progs": ["lst_sys_exit_btf"], "errors": {}},
                self.fds(2))


def test_tp_btf_attach_failure_falls_back_to_raw_tp(tmp_path, monkeypatch):
    """bpf_syscall: a tp_btf program that does not attach falls back to its
    raw_tp program (loaded then, by the still-running child), in the same mode."""
    s, attached = _session_whose_attach_fails(monkeypatch, tmp_path, FakeSyscallLoader, "tp_btf",
                                              "Invalid argument", probes=["bpf_syscall"])
    s.start()
    try:
        p = s.plans[0]
        assert (p.mode, p.func) == ("tracepoint", "") and p.tried["tp_btf"].startswith("tp_btf")
        assert attached == [("raw_tp", "sys_exit")]
        assert FakeLoader.requests[-1] == {"op": "load", "functions": [
            ("lst_sys_exit", "raw_tp", "sys_exit")]}
    finally:
        s.stop()


# ---- real BPF on this host
@pytest.mark.root
def test_serve_never_maps_bcc_and_stays_lean():
    """libbcc / LLVM, once mapped, stay mapped (Python never unloads a
    library): absent while serving means never mapped.  The loader child is
    gone by then."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = subprocess.Popen(lstrace_cmd("serve", "--listen", f"127.0.0.1:{port}"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: b"lstrace_build_info" in urllib.request.urlopen(url, timeout=10).read(),
                 60, "lstrace serve", proc)
        for _ in range(20):
            urllib.request.urlopen(url, timeout=10).read()
        with open(f"/proc/{proc.pid}/maps") as f:
            maps = f.read()
        mapped = sorted({line.split()[-1] for line in maps.splitlines()
                         if any(lib in line for lib in BCC_LIBS)})
        rss, anon = status_kb(proc.pid, "VmRSS") / 1024, status_kb(proc.pid, "RssAnon") / 1024
        kids = loader_children(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        err = proc.stderr.read()
    print(f"\nserve: VmRSS {rss:.1f} MB, RssAnon {anon:.1f} MB; BCC/LLVM mapped: {mapped}")
    assert rc == 0, err
    assert not mapped, f"lstrace serve maps {mapped}"
    assert not kids, f"the loader child outlived start-up: {kids}"
    assert rss <= RSS_LIMIT_MB, f"VmRSS {rss:.1f} MB > {RSS_LIMIT_MB} MB"
    assert anon <= ANON_LIMIT_MB, f"RssAnon {anon:.1f} MB > {ANON_LIMIT_MB} MB"


@pytest.mark.root
def test_bcc_missing_in_the_child_is_one_clear_line(tmp_path):
    """The child reports a missing BCC as today's message and exit code 69."""
    shim = tmp_path / "shim" / "bcc"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('no bcc here (test shim)')\n")
    before = lstrace_prog_ids()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shim")}
    r = subprocess.run(lstrace_cmd("serve", "--once"), cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == errors.EXIT_UNAVAILABLE, r.stderr
    assert r.stderr.startswith("lstrace: BCC is not installed for this Python"), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""
    assert not left_over(before)


@pytest.mark.root
def test_compile_error_is_the_same_clear_error(monkeypatch):
    """A program BCC cannot compile: the child's message, as Session raised it
    before the split (run in-process here: the child's code, not a child)."""
    from lstrace import program
    real = program.build

    def broken(*a, **kw):
        text, cflags, lay = real(*a, **kw)
        return text + "\nint this is not C;\n", cflags, lay

    monkeypatch.setattr(program, "build", broken)
    loader_child = child.Child()
    req = {"op": "start", "probes": ["bpf_syscall"], "mode": "auto", "latency": False,
           "kernel": {"btf_path": "/sys/kernel/btf/vmlinux", "kallsyms_path": "/proc/kallsyms",
                      "release": os.uname().release}}
    with pytest.raises(errors.Unavailable) as got:
        loader_child.start(req)
    assert str(got.value).startswith("BCC could not compile lstrace's BPF program against ")


@pytest.mark.root
def test_session_holds_fds_by_name_and_attaches_itself():
    from lstrace import bpfsys
    from lstrace.session import Session
    before = lstrace_prog_ids()
    t0 = time.monotonic()
    with Session(probes=["bpf_syscall", "rqspinlock"]) as s:
        took = time.monotonic() - t0
        stats = {p.name: p for p in s.program_stats()}
        wanted = {fn for p in s.plans if p.available for _, _, fn in s.attach_points(p)}
        assert wanted and wanted == set(stats), (wanted, set(stats))
        assert all(p.id in set(bpfsys.iter_prog_ids()) for p in stats.values())
        assert s.kernel.generation in "ABC" and s.compiled and s.layout
        assert not loader_children(os.getpid()), "the loader child outlived start()"
        for p in s.plans:                   # detach and re-attach from the held fds
            s.detach(p)
            s.attach(p)
            assert p.available, p.reason
        s.snapshot()
    print(f"\nSession.start {took:.2f} s")
    assert not left_over(before)


@pytest.mark.root
def test_attach_errors_name_the_point():
    from lstrace import attach
    with pytest.raises(attach.AttachError, match="tracepoint nosuch:event"):
        attach.tracepoint_id("nosuch:event")
