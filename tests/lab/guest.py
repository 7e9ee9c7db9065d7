"""Boot one lab guest under qemu (TCG) with the host root over virtiofs and run one command in it.

The root (virtiofs tag hostroot) is the host's / or, with --root debian13, a root file system built
by rootfs.py; then the host's / is a third share (tag host, /run/host in the guest) from which the
checkout, the working directory and the kernel tree are bound at their host paths.

Host side of a run (a temp directory, removed at the end):
  RUN/share/        second virtiofs share, /run/lab in the guest: env, cmd, started, exit, out/
  RUN/console.log   ttyS0: the kernel's and guest-init's messages
  RUN/*.sock, RUN/*.log   virtiofsd sockets and logs, qemu's stderr
The command's output comes over ttyS1 on qemu's stdout and is streamed to our stdout.
"""
import ctypes
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import rootfs

# Debian architecture -> the qemu that runs it under TCG and how: machine and cpu options,
# the console (kernel log) and the serial line of the command's output.  arm64: -M virt has one
# PL011 UART (ttyAMA0, the console), so the output goes over a virtio console (hvc0); `-cpu max`
# has LSE and 128-bit cmpxchg (7.x task storage needs them, as x86's cx16) and pauth-impdef
# swaps its architected pointer-auth cipher for a cheap one (TCG: several times faster).
QEMUS = {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
QEMU = QEMUS["amd64"]
CONSOLE = {"amd64": "ttyS0", "arm64": "ttyAMA0"}
OUT_TTY = {"amd64": "/dev/ttyS1", "arm64": "/dev/hvc0"}
VIRTIOFSD = next((p for p in ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd",
                              "/usr/bin/virtiofsd") if os.path.exists(p)), "virtiofsd")
HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
GUEST_INIT = HERE / "guest-init.sh"
GUEST_LAB = "/run/lab"
GUEST_HOST = "/run/host"  # where a debian13 guest mounts the host's /
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_DEADLINE = 240  # seconds from qemu start to the command starting (TCG boots take 5-15 s)
TAIL_LINES = 60
STARTED = "lab-init: running the command"  # printed by guest-init.sh on the console
FINISHED = "lab-init: the command finished"
SPLAT = re.compile(r"WARNING:|BUG:|Oops|Call Trace|Call trace:|Kernel panic|RIP: |INFO: task|"
                   r"rcu_.*stall|Unable to handle kernel|Internal error:")
# Crashes worth one more boot (TCG flakiness); failures that would only repeat are not.
CRASH = re.compile(r"Kernel panic|Oops|BUG: |general protection fault|KVM internal error|"
                   r"invalid opcode|Unable to handle kernel|Internal error:")
DETERMINISTIC = re.compile(r"Requested init|No working init|Unable to mount root|"
                           r"lab-init: error|lab-initramfs: error")
# Host variables the command sees; everything else in the guest is set by guest-init.sh.
PASS_ENV = ("PATH", "TERM", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "PYTHONUNBUFFERED",
            "PYTHONWARNINGS", "PYTEST_ADDOPTS", "CI", "NO_COLOR")
PASS_PREFIXES = ("LSTRACE_",)


def _die_with_parent():
    """In the child before exec: SIGTERM it if the runner dies, even by SIGKILL (no orphans)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Interrupted(Exception):
    """SIGINT/SIGTERM/SIGHUP arrived: clean up, then exit 128+signum."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    raise Interrupted(signum)


def install_signal_handlers():
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)


class Result:
    def __init__(self, status, code=None, boot_s=None, run_s=None, console=""):
        self.status = status  # "ok" | "boot" | "timeout" | "died"
        self.code, self.boot_s, self.run_s, self.console = code, boot_s, run_s, console

    @property
    def tail(self):
        return "\n".join(self.console.splitlines()[-TAIL_LINES:])

    def splats(self):
        """Kernel warnings, oopses and the like printed while the command ran."""
        after = self.console.partition(STARTED)[2].partition(FINISHED)[0]
        return [l for l in after.splitlines() if SPLAT.search(l)]


def guest_env(kernel_key, extra, root=None, arch="amd64"):
    env = {k: v for k, v in os.environ.items() if k in PASS_ENV or k.startswith(PASS_PREFIXES)}
    env.setdefault("PATH", DEFAULT_PATH)
    if root:
        # Not the host's userspace: its PATH (venvs, pyenv) and PYTHONPATH mean nothing there.
        # Debian's python3 finds lstrace in the checkout.
        env.update(PATH=DEFAULT_PATH, PYTHONPATH=str(CHECKOUT))
    env.update(HOME="/tmp", PYTHONDONTWRITEBYTECODE="1", LAB_KERNEL=kernel_key,
               LAB_ROOT="debian13" if root else "host", LAB_OUT=f"{GUEST_LAB}/out",
               LAB_ARCH=arch)
    # The checkout is read-only in the guest: no .pytest_cache.
    env["PYTEST_ADDOPTS"] = (env.get("PYTEST_ADDOPTS", "") + " -p no:cacheprovider").strip()
    env.update(extra)
    return env


class Guest:
    def __init__(self, tree, kernel_key, cpus=2, mem=2048, append=(), initrd=None, root=None):
        self.tree, self.key, self.cpus, self.mem = tree, kernel_key, cpus, mem
        self.append, self.initrd = list(append), initrd
        self.root = root  # a rootfs.Root, or None: the host's /
        self.procs = []  # (name, Popen), each leading its own process group

    # ------------------------------------------------------------ processes
    def _spawn(self, name, argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                             preexec_fn=_die_with_parent, **kw)
        self.procs.append((name, p))
        return p

    def _virtiofsd(self, run, tag, source, cache):
        sock = run / f"{tag}.sock"
        log = open(run / f"virtiofsd-{tag}.log", "wb")
        # sandbox=chroot: the default namespace sandbox cannot pivot_root on /.
        argv = [VIRTIOFSD, f"--socket-path={sock}", "-o", f"source={source}",
                "-o", f"cache={cache}", "-o", "sandbox=chroot"]
        self._spawn(f"virtiofsd-{tag}", argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return sock

    def shares(self, run):
        """virtiofs tag -> (host directory, cache mode)."""
        s = {"hostroot": (self.root.path if self.root else "/", "always"),
             "lab": (run / "share", "none")}
        if self.root:
            s["host"] = ("/", "always")
        return s

    def _qemu_argv(self, run, socks, hard_limit):
        arch = self.tree.arch
        init = rootfs.INIT if self.root else GUEST_INIT
        cmdline = [f"console={CONSOLE[arch]}", "root=hostroot", "rootfstype=virtiofs", "ro",
                   f"init={init}", "panic=-1"] + self.append
        if arch == "arm64":
            machine = ["-M", "virt,memory-backend=mem", "-cpu", "max,pauth-impdef=on"]
            out = ["-serial", f"file:{run / 'console.log'}", "-device", "virtio-serial-pci",
                   "-chardev", "stdio,id=out", "-device", "virtconsole,chardev=out"]
        else:
            machine = ["-cpu", "max,-cx16" if self.tree.needs_cx16_hidden else "max",
                       "-numa", "node,memdev=mem"]
            out = ["-serial", f"file:{run / 'console.log'}", "-serial", "stdio"]
        argv = ["timeout", "--kill-after=10", str(int(hard_limit)), QEMUS[arch],
                # single-threaded TCG: KVM here is kvm_pvm (Debian kernels die in its emulator)
                # and multi-threaded TCG crashed guests now and then.
                "-accel", "tcg,thread=single", *machine, "-smp", str(self.cpus),
                "-m", f"{self.mem}M", "-object",
                f"memory-backend-memfd,id=mem,size={self.mem}M,share=on",
                "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
                "-kernel", str(self.tree.vmlinuz), "-append", " ".join(cmdline), *out]
        for tag, sock in socks.items():
            argv += ["-chardev", f"socket,id=fs{tag},path={sock}",
                     "-device", f"vhost-user-fs-pci,chardev=fs{tag},tag={tag}"]
        if self.initrd:
            argv += ["-initrd", str(self.initrd)]
        return argv

    def stop(self):
        """qemu first (virtiofsd then exits by itself), then whatever is left, by process group."""
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait()
        self.procs.clear()

    # ------------------------------------------------------------ one boot
    def boot(self, run: Path, deadline, out=sys.stdout.buffer):
        share = run / "share"
        for f in ("started", "exit"):
            (share / f).unlink(missing_ok=True)
        (run / "console.log").unlink(missing_ok=True)
        socks = {tag: self._virtiofsd(run, tag, src, cache)
                 for tag, (src, cache) in self.shares(run).items()}
        t_wait = time.monotonic() + 10
        while not all(s.exists() for s in socks.values()):
            dead = [n for n, p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > t_wait:
                logs = "".join((run / f"{n}.log").read_text(errors="replace")
                               for n, _ in self.procs if (run / f"{n}.log").exists())
                self.stop()
                return Result("boot", console=f"virtiofsd did not start:\n{logs}")
            time.sleep(0.05)

        t0 = time.monotonic()
        hard = max(deadline - t0, 1) + 15  # backstop if this process dies without cleaning up
        qerr = open(run / "qemu.err", "wb")
        qemu = self._spawn("qemu", self._qemu_argv(run, socks, hard),
                           stdout=subprocess.PIPE, stderr=qerr)
        qerr.close()
        pump = threading.Thread(target=_pump, args=(qemu.stdout, out), daemon=True)
        pump.start()

        boot_deadline = min(t0 + BOOT_DEADLINE, deadline)
        started_at = None
        status = None
        while qemu.poll() is None:
            now = time.monotonic()
            if started_at is None and (share / "started").exists():
                started_at = now
            if started_at is None and now > boot_deadline:
                status = "timeout" if now > deadline else "boot"
                break
            if now > deadline:
                status = "timeout"
                break
            time.sleep(0.1)
        if started_at is None and (share / "started").exists():
            started_at = time.monotonic()
        end = time.monotonic()
        self.stop()
        pump.join(timeout=5)

        console = _console(run)
        boot_s = (started_at or end) - t0
        run_s = end - started_at if started_at else None
        code_file = share / "exit"
        if code_file.exists():
            return Result("ok", int(code_file.read_text().strip() or 1), boot_s, run_s, console)
        if status is None:
            status = "died" if started_at else "boot"
        return Result(status, None, boot_s, run_s, console)


def _pump(src, dst):
    """Copy the command's output (ttyS1) to our stdout as it comes."""
    while True:
        chunk = os.read(src.fileno(), 65536)
        if not chunk:
            break
        try:
            dst.write(chunk)
            dst.flush()
        except (BrokenPipeError, ValueError):
            pass  # reader gone (`| head`): keep draining, or the guest blocks on its UART


def _console(run: Path):
    """ttyS0 (kernel and guest-init messages), then anything qemu said."""
    text = ""
    for name in ("console.log", "qemu.err"):
        f = run / name
        if f.exists():
            text += f.read_text(errors="replace").replace("\r", "")
    return text


def prepare(run: Path, argv, cwd, env, guest):
    """Write what guest-init.sh reads: the command, its environment and where things are."""
    share = run / "share"
    (share / "out").mkdir(parents=True)
    os.chmod(share / "out", 0o1777)
    tree = guest.tree
    # Host paths the guest sees at the same path; shortest first, so an inner one binds last.
    keep = sorted({str(cwd), str(tree.root)} | ({str(CHECKOUT)} if guest.root else set()), key=len)
    if guest.root:
        rootfs.prepare(guest.root, GUEST_INIT, keep + ["/usr/lib/modules"])
    q = shlex.quote
    lines = [f"export {k}={q(v)}" for k, v in sorted(env.items())]
    lines += [f"LAB_CWD={q(str(cwd))}", f"LAB_MODDIR={q(str(tree.moddir))}",
              f"LAB_BUILD={q(str(tree.build))}", f"LAB_SOURCE={q(str(tree.source))}",
              f"LAB_KEEP={q(' '.join(keep))}", f"LAB_HOST={GUEST_HOST if guest.root else ''}",
              f"LAB_TTY={OUT_TTY[tree.arch]}"]
    (share / "env").write_text("\n".join(lines) + "\n")
    (share / "cmd").write_text("exec " + " ".join(q(a) for a in argv) + "\n")


def _sweep_stale():
    """Remove run directories left by runners that were SIGKILLed (their pid is gone)."""
    for d in Path(tempfile.gettempdir()).glob("lstrace-lab.*"):
        try:
            os.kill(int((d / "runner.pid").read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            pass  # no pid file yet (just created) or not ours to judge


def run_command(guest, argv, cwd, env, timeout, out_dir=None, log=print):
    """Boot (retrying once on a crash before the command started) and run argv. -> Result."""
    _sweep_stale()
    run = Path(tempfile.mkdtemp(prefix="lstrace-lab."))
    (run / "runner.pid").write_text(str(os.getpid()))
    try:
        prepare(run, argv, cwd, env, guest)
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            res = guest.boot(run, deadline)
            retry = (res.status in ("boot", "died") and res.run_s is None and attempt == 1
                     and CRASH.search(res.tail) and not DETERMINISTIC.search(res.tail)
                     and time.monotonic() < deadline - 5)
            if not retry:
                break
            log(f"guest crashed while booting; retrying once. Console tail:\n{res.tail}")
        if out_dir:
            shutil.copytree(run / "share" / "out", out_dir, dirs_exist_ok=True)
        return res
    finally:
        guest.stop()
        shutil.rmtree(run, ignore_errors=True)
