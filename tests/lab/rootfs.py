"""A Debian 13 (trixie) root file system for lab guests: a second userspace (BCC 0.31, Python 3.13).

Built once with mmdebstrap from Debian's archive into the lab cache and keyed by everything that
goes into it (suite, mirror, package list, options, architecture), so changing the list builds a
new root:
  CACHE/roots/debian13-KEY/rootfs/         the root file system, shared read-only with the guest
  CACHE/roots/debian13-KEY/manifest.json   written last: a root without it is never used
  CACHE/roots/debian13-arm64-KEY/          the same for another Debian architecture (--arch arm64),
                                           built under qemu-user in a namespace (binfmt.py)
Roots of other keys stay (another checkout may want them); `tests/lab/run --list` shows them.
"""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import binfmt
import kernels

SUITE = "trixie"
MIRROR = kernels.MIRRORS["debian"]
# What the guest runs: lstrace and its tests with Debian's python3, BCC and pytest; repro's
# clang + bpftool + libbpf; guest-init.sh's busybox; dmesg/mount (util-linux), modprobe (kmod).
PACKAGES = sorted([
    "python3", "python3-bpfcc", "bpftool", "python3-click", "python3-tabulate",
    "python3-prometheus-client", "python3-pytest", "busybox-static", "kmod", "iproute2",
    "util-linux", "clang", "llvm", "libbpf-dev", "procps",
])
# Docs, man pages and translations are never read in a guest (about 15% of the size).
OPTIONS = ["--variant=apt", "--mode=root", "--aptopt=Acquire::Languages \"none\"",
           "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
           "--dpkgopt=path-exclude=/usr/share/locale/*"]
# The guest's PID 1, copied in at run time (the root is read-only in the guest).
INIT = "/usr/local/sbin/lstrace-lab-init"
# Whose versions the manifest records (what the tests check).
REPORTED = ("python3", "python3-bpfcc", "bpftool", "clang", "python3-pytest")
ROOTS = {"debian13"}


class BuildError(Exception):
    pass


@dataclass
class Root:
    dir: Path        # CACHE/roots/debian13-KEY
    manifest: dict

    @property
    def path(self):
        return self.dir / "rootfs"


def key(arch="amd64"):
    spec = [SUITE, MIRROR, PACKAGES, OPTIONS] + ([] if arch == "amd64" else [arch])
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:12]


def dir_name(arch="amd64"):
    return f"debian13-{key()}" if arch == "amd64" else f"debian13-{arch}-{key(arch)}"


def load(d: Path):
    m = d / "manifest.json"
    return Root(d, json.loads(m.read_text())) if m.is_file() else None


def cached(cache: Path):
    return [r for d in sorted((cache / "roots").glob("debian13-*")) if (r := load(d))]


def _size(path: Path):
    """Bytes in regular files (hard links once), like du -sb."""
    seen, total = set(), 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if st.st_nlink > 1:
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
            total += st.st_size
    return total


def _versions(rootfs: Path):
    out = subprocess.run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
                          "-f", "${Package} ${Version}\n", *REPORTED],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def _mounts_under(path: Path):
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(f"{path}/")]


def _remove(tmp: Path):
    """rmtree, but never while mmdebstrap's /proc, /sys or /dev mounts are inside: it would
    descend into them."""
    if _mounts_under(tmp):
        kernels.note(f"left {tmp} in place: file systems are still mounted inside it")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def _mmdebstrap(target: Path, arch):
    argv = ["mmdebstrap", "--quiet", *OPTIONS, f"--include={','.join(PACKAGES)}"]
    out = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if arch == kernels.host_arch():
        p = subprocess.Popen(argv + [SUITE, str(target), MIRROR], **out)
    else:  # maintainer scripts run under qemu-user, registered in a namespace only
        p = binfmt.popen(arch, argv + [f"--architectures={arch}", SUITE, str(target), MIRROR],
                         **out)
    try:
        err = p.communicate()[1]
    finally:
        if p.poll() is None and arch != kernels.host_arch():
            binfmt.stop(p)  # its mounts are in its own namespace: they go with it
        if p.poll() is None:  # we were interrupted: let it undo its mounts before we clean up
            p.terminate()
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if p.returncode:
        raise BuildError(f"mmdebstrap failed ({p.returncode}):\n{err[-3000:]}")


def _build(cache: Path, final: Path, arch):
    (cache / "roots").mkdir(exist_ok=True)
    for stale in (cache / "roots").glob(f".{final.name}.*"):  # killed before its cleanup
        _remove(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=cache / "roots"))
    try:
        foreign = arch != kernels.host_arch()
        kernels.note(f"building the debian13 {arch} root with mmdebstrap ({len(PACKAGES)} "
                     f"packages and their dependencies from {MIRROR} {SUITE}; "
                     f"{'a few minutes under qemu-user' if foreign else 'about a minute'})")
        t0 = time.monotonic()
        _mmdebstrap(tmp / "rootfs", arch)
        secs = time.monotonic() - t0
        manifest = {"key": key(arch), "arch": arch, "suite": SUITE, "mirror": MIRROR,
                    "packages": PACKAGES,
                    "options": OPTIONS, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "build_seconds": round(secs, 1), "size_bytes": _size(tmp / "rootfs"),
                    "versions": _versions(tmp / "rootfs")}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        tmp.rename(final)
        kernels.note(f"debian13 {arch} root built in {secs:.0f} s, {manifest['size_bytes'] / 1e6:.0f} MB: "
                     f"{final}")
    except (OSError, binfmt.BinfmtError) as e:
        raise BuildError(f"building {final}: {e} (mmdebstrap, qemu-user-static and arch-test "
                         "come with scripts/install.sh --test)") from e
    finally:
        _remove(tmp)
    return load(final)


def fetch(cache: Path, arch="amd64") -> Root:
    """The debian13 root of a Debian architecture for this package list: from the cache, else
    built (takes CACHE/.lock)."""
    final = cache / "roots" / dir_name(arch)
    # its own lock (CACHE/.lock.ROOT): the arm64 build takes minutes, kernel fetches go on
    with kernels.CacheLock(cache, f".lock.{final.name}"):
        return load(final) or _build(cache, final, arch)


def prepare(root: Root, init: Path, mountpoints):
    """Before a boot: the current guest-init.sh at INIT, and empty directories where the guest
    binds host paths (the checkout, the kernel tree): the guest cannot create them, its root is
    read-only."""
    dest = root.path / INIT.lstrip("/")
    data = init.read_bytes()
    if not dest.exists() or dest.read_bytes() != data:
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(data)
        os.chmod(part, 0o755)
        part.rename(dest)  # a concurrent boot sees the old or the new init, never half of one
    for p in mountpoints:
        d = root.path
        for part in Path(p).parts[1:]:
            d = d / part
            if d.is_symlink():  # an absolute link would lead mkdir out of the root, onto the host
                raise BuildError(f"cannot make a mount point for {p}: {d} is a symlink")
        d.mkdir(parents=True, exist_ok=True)
