"""Run one command with qemu-user emulation of a foreign architecture, leaving the host's
binfmt_misc untouched.

Since Linux 6.7 every user namespace can mount its own binfmt_misc instance ("sandboxed"
binfmt_misc); a program started in that namespace (or one below it) is matched against that
instance's handlers, everything else on the host against the host's.  So the command runs in new
user, mount and PID namespaces, with uids and gids 0-65535 mapped to the same host ids (root stays
root and files get their real owners), and a binfmt_misc of its own mounted at
/proc/sys/fs/binfmt_misc (a private mount) holding one handler: Debian's qemu-user-static line for
the architecture (usr/lib/binfmt.d/qemu-ARCH.conf, flag F: the interpreter is opened at
registration, so the target tree needs no copy of it).  Nothing is mounted or registered on the
host; when the command ends, even by SIGKILL, the namespace and its handler are gone.

The interpreter and that line come from Debian's qemu-user-static package, downloaded (apt-get
download) and unpacked into the lab cache (CACHE/tools/), never installed: installing it
registers every handler host-wide where systemd-binfmt or binfmt-support runs.
"""
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import kernels

QEMU_ARCH = {"arm64": "aarch64", "amd64": "x86_64"}   # Debian architecture -> qemu's name
PACKAGE = "qemu-user-static"
CONF = "usr/lib/binfmt.d/qemu-{}.conf"                # in that package
BINARY = "usr/bin/qemu-{}-static"
IDS = 65536                                           # uids/gids mapped 1:1 (Debian uses < 65536)

# sh waits until the runner has written the id maps, then re-executes itself: a program
# exec'd while its uid was unmapped lost its capabilities, one exec'd after has them all.
_INNER = ('mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 97\n'
          'printf %s "$1" >/proc/sys/fs/binfmt_misc/register || exit 97\n'
          'shift\n'
          'exec "$@" </dev/null\n')
_OUTER = 'read -r _ || exit 97\nexec sh -c "$0" sh "$@"'


class BinfmtError(Exception):
    pass


def handler(arch, cache: Path):
    """Debian's binfmt_misc line for arch, its interpreter the static qemu unpacked into
    CACHE/tools/ (downloaded once)."""
    q = QEMU_ARCH.get(arch, arch)
    tools = cache / "tools" / PACKAGE
    with kernels.CacheLock(cache, ".lock.tools"):
        if not (tools / CONF.format(q)).exists():
            _unpack(tools, [BINARY.format(q), CONF.format(q)])
    fields = (tools / CONF.format(q)).read_text().strip().split(":")
    fields[-2] = str(tools / BINARY.format(q))     # :name:type:offset:magic:mask:interpreter:flags
    return ":".join(fields)


def _unpack(tools: Path, members):
    kernels.note(f"downloading {PACKAGE} (apt-get download) for its {', '.join(members)}")
    with tempfile.TemporaryDirectory(dir=tools.parent.parent) as tmp:
        r = subprocess.run(["apt-get", "download", "-q", PACKAGE], cwd=tmp,
                           capture_output=True, text=True)
        debs = list(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        if r.returncode or not debs:
            raise BinfmtError(f"apt-get download {PACKAGE} failed: {r.stderr.strip()[-500:]}")
        data = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])],
                                stdout=subprocess.PIPE)
        with tarfile.open(fileobj=data.stdout, mode="r|") as tar:
            for m in tar:
                if m.name.lstrip("./") in members and m.isfile():
                    tar.extract(m, Path(tmp) / "x")
        data.wait()
        for name in members:
            if not (Path(tmp) / "x" / name).exists():
                raise BinfmtError(f"{debs[0].name} has no {name}")
        tools.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tools, ignore_errors=True)
        (Path(tmp) / "x").rename(tools)


def popen(arch, cache: Path, argv, **kw):
    """Start argv emulated for Debian architecture arch (see the module doc); a Popen whose
    exit status is argv's (97: the sandbox could not be set up)."""
    p = subprocess.Popen(["unshare", "--user", "--mount", "--pid", "--fork", "--kill-child",
                          "sh", "-c", _OUTER, _INNER, handler(arch, cache), *argv],
                         stdin=subprocess.PIPE, **kw)
    try:
        _map_ids(p)
        p.stdin.write("go\n" if p.text_mode else b"go\n")
        p.stdin.close()
        p.stdin = None       # communicate() has nothing to send
    except BaseException:
        p.kill()
        p.wait()
        raise
    return p


def stop(p):
    """Stop it now: unshare(1) blocks SIGTERM while it waits, so SIGKILL; --kill-child takes
    the namespace's PID 1 along and with it every process, mount and handler inside."""
    if p.poll() is None:
        p.kill()
        p.wait()


def _map_ids(p):
    """unshare(1) enters the new user namespace itself before it forks: map its ids then."""
    mine = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + 10
    while True:
        try:
            if os.readlink(f"/proc/{p.pid}/ns/user") != mine:
                break
        except OSError:
            pass
        if p.poll() is not None or time.monotonic() > deadline:
            raise BinfmtError("unshare did not start a user namespace")
        time.sleep(0.01)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{p.pid}/{name}", "w") as f:
            f.write(f"0 0 {IDS}\n")
