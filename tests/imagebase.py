"""The offline base of the lstrace image: a minimal Debian 13 root (what debian:trixie-slim
is) made by mmdebstrap from Debian's archive, cached as a tarball and imported into podman.

No registry is reachable from these machines, so `FROM debian:trixie-slim` cannot be
pulled; the Containerfile takes this instead (--build-arg BASE=...).  Cached like the
lab's debian13 root, keyed by everything that goes into it:
  CACHE/roots/trixie-base-KEY.tar     (CACHE: $LSTRACE_LAB_CACHE or /var/cache/lstrace-lab)
"""
import fcntl
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
OPTIONS = ["--variant=minbase", "--mode=root", "--aptopt=Acquire::Languages \"none\"",
           "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
           "--dpkgopt=path-exclude=/usr/share/locale/*"]
PATH_ENV = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_dir():
    return Path(os.environ.get("LSTRACE_LAB_CACHE", "/var/cache/lstrace-lab"))


def key():
    return hashlib.sha256(json.dumps([SUITE, MIRROR, OPTIONS]).encode()).hexdigest()[:12]


def tarball(cache=None):
    """(path of the base root's tarball, seconds spent building it: 0 when cached)."""
    roots = (cache or cache_dir()) / "roots"
    roots.mkdir(parents=True, exist_ok=True)
    final = roots / f"trixie-base-{key()}.tar"
    with open(roots.parent / ".lock", "a") as lock:      # the lab's lock: one builder at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_file():
            return final, 0.0
        part = final.with_name(f".{final.stem}.part.tar")      # mmdebstrap: format from the name
        t0 = time.monotonic()
        r = subprocess.run(["mmdebstrap", "--quiet", *OPTIONS, SUITE, str(part), MIRROR],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode:
            part.unlink(missing_ok=True)
            raise RuntimeError(f"mmdebstrap failed ({r.returncode}): {r.stderr[-2000:]}")
        part.rename(final)
        return final, time.monotonic() - t0
