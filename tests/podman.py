"""podman as these machines need it, in storage of its own that is deleted afterwards.

Debian's podman runs containers here only with `--runtime runc` (crun refuses the hybrid
cgroup layout) and explicit `--ulimit`s (root lacks CAP_SYS_RESOURCE, so podman's default
limits cannot be set).  Each Podman() keeps its images and containers under one temporary
directory (--root/--runroot/--tmpdir): concurrent runs cannot clash, and close() leaves
no image, container or mount on the host.  Builds use the host's network (no bridge, no
firewall rules left behind); containers get slirp4netns, a user-mode network with the
metrics port published on 127.0.0.1 only.
"""
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

RUN_OPTS = ["--runtime", "runc", "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096"]
NETWORK = "slirp4netns:port_handler=slirp4netns"


class Podman:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="lstrace-podman.", dir="/var/tmp"))
        self.base = ["podman", "--root", str(self.dir / "storage"), "--runroot",
                     str(self.dir / "run"), "--tmpdir", str(self.dir / "tmp")]

    def __call__(self, *args, timeout=600, check=True, **kw):
        r = subprocess.run([*self.base, *args], capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode:
            raise AssertionError(f"podman {' '.join(args[:2])} failed ({r.returncode}): "
                                 f"{(r.stderr or r.stdout)[-3000:]}")
        return r

    def import_root(self, tarball, name, change):
        self("import", "--change", change, str(tarball), name)

    def build(self, context, tag, build_args=()):
        """Seconds the build took."""
        t0 = time.monotonic()
        self("build", "--network", "host", *RUN_OPTS[:2], *RUN_OPTS[2:], "-t", tag,
             *[f"--build-arg={a}" for a in build_args], "-f", "Containerfile", str(context),
             timeout=1800)
        return time.monotonic() - t0

    def size(self, tag):
        return int(self("image", "inspect", "--format", "{{.Size}}", tag).stdout)

    def run(self, image, *args, opts=(), detach=False, timeout=300):
        return self("run", *(["-d"] if detach else ["--rm"]), *RUN_OPTS, *opts, image, *args,
                    timeout=timeout, check=detach)

    def mounts(self):
        with open("/proc/self/mountinfo") as f:
            return [ln.split()[4] for ln in f if ln.split()[4].startswith(f"{self.dir}/")]

    def close(self):
        """Remove every container and image, then the storage itself."""
        for args in (("rm", "-af", "-t", "0"), ("rmi", "-af")):
            self(*args, check=False, timeout=120)
        for m in sorted(self.mounts(), reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        if self.mounts():
            raise AssertionError(f"mounts left under {self.dir}: {self.mounts()}")
        shutil.rmtree(self.dir, ignore_errors=True)
