"""Run one command with qemu-user emulation of a foreign architecture, leaving the host's
binfmt_misc untouched.

Since Linux 6.7 every user namespace can mount its own binfmt_misc instance ("sandboxed"
binfmt_misc); a program started in that namespace (or one below it) is matched against that
instance's handlers, everything else on the host against the host's.  So the command runs in new
user, mount and PID namespaces, with uids and gids 0-65535 mapped to the same host ids (root stays
root and files get their real owners), and a binfmt_misc of its own mounted at
/proc/sys/fs/binfmt_misc (a private mount) holding one handler: Debian's qemu-user-static line for
the architecture (/usr/lib/binfmt.d/qemu-ARCH.conf, flag F: the interpreter is opened at
registration, so the target tree needs no copy of it).  Nothing is mounted or registered on the
host; when the command ends, even by SIGKILL, the namespace and its handler are gone.
"""
import os
import subprocess
import time

QEMU_ARCH = {"arm64": "aarch64", "amd64": "x86_64"}   # Debian architecture -> qemu's name
CONF = "/usr/lib/binfmt.d/qemu-{}.conf"               # from qemu-user-static
IDS = 65536                                           # uids/gids mapped 1:1 (Debian uses < 65536)

# sh waits until the runner has written the id maps, then re-executes itself: a program
# exec'd while its uid was unmapped lost its capabilities, one exec'd after has them all.
_INNER = ('mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || exit 97\n'
          'cat "$1" >/proc/sys/fs/binfmt_misc/register || exit 97\n'
          'shift\n'
          'exec "$@" </dev/null\n')
_OUTER = 'read -r _ || exit 97\nexec sh -c "$0" sh "$@"'


class BinfmtError(Exception):
    pass


def conf(arch):
    path = CONF.format(QEMU_ARCH.get(arch, arch))
    if not os.path.exists(path):
        raise BinfmtError(f"{path} is missing: apt-get install qemu-user-static "
                          "(scripts/install.sh --test)")
    return path


def popen(arch, argv, **kw):
    """Start argv emulated for Debian architecture arch (see the module doc); a Popen whose
    exit status is argv's (97: the sandbox could not be set up)."""
    p = subprocess.Popen(["unshare", "--user", "--mount", "--pid", "--fork", "--kill-child",
                          "sh", "-c", _OUTER, _INNER, conf(arch), *argv],
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
