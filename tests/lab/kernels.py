"""Fetch and unpack the lab's Debian kernels into a cache, never touching the host's apt state.

Cache layout (CACHE = --cache, $LSTRACE_LAB_CACHE or /var/cache/lstrace-lab):
  CACHE/apt/SUITE[-ARCH]/   private apt index (apt.conf, sources.list, lists/, archives/);
                            -ARCH for a Debian architecture other than amd64 (e.g. -arm64)
  CACHE/debs/RELEASE_VERSION/   downloaded .deb files
  CACHE/kernels/RELEASE_VERSION/  `dpkg -x` of all of them + tree.json (written last: complete)
  CACHE/kernels/RELEASE_VERSION/initramfs.cpio   only for kernels whose virtio bits are modules
  CACHE/roots/debian13[-ARCH]-KEY/   the --root debian13 root file system (rootfs.py)
"""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = "/var/cache/lstrace-lab"
MIRRORS = {"debian": "http://deb.debian.org/debian",
           "debian-security": "http://deb.debian.org/debian-security"}
INDEX_MAX_AGE = 24 * 3600  # refresh a private index at most once a day


class FetchError(Exception):
    pass


@dataclass(frozen=True)
class Pin:
    suite: str        # one apt suite, e.g. bookworm-backports
    release: str      # `uname -r` of the kernel, e.g. 6.12.95+deb12-amd64
    version: str      # Debian package version of that release
    release_re: str   # how to recognise another release of the same line in the suite (fallback)
    split: bool = False  # 7.x: linux-binary-R + linux-base-R instead of linux-image-R-unsigned


# Pinned 2026-11-22 from the private index (see README.md). The suites move: when a pin is gone
# the newest release matching release_re in the same suite is used instead, with a note.
PINS = {
    "6.1": Pin("bookworm-security", "6.1.0-56-amd64", "6.1.192-2",
               r"^linux-image-(6\.1\.0-\d+-amd64)-unsigned$"),
    "6.12": Pin("bookworm-backports", "6.12.95+deb12-amd64", "6.12.95-1~bpo12+1",
                r"^linux-image-(6\.12\.\d+\+deb12-amd64)-unsigned$"),
    "7": Pin("trixie-backports", "7.3.4+deb13-amd64", "7.3.4-1~bpo13+1",
             r"^linux-binary-(7\.\d+\.\d+\+deb13-amd64)$", split=True),
    # Debian sid's newest kernel (issue 13 item 8; pinned 2026-12-05): a different 7.x
    # line from the pinned 7 (7.2: rqspinlock LRU lists, the queue-flush fix of
    # 7a3c0289c3c8).  When sid moves on, release_re picks its newest release.
    "sid": Pin("sid", "7.2.13+deb14-amd64", "7.2.13-1",
               r"^linux-binary-(\d+\.\d+\.\d+\+deb\d+-amd64)$", split=True),
}


# Debian architecture -> what the lab needs of it.  The pins above are amd64's; another
# architecture takes the same suites and versions with its own flavour (uname -r ends in
# -ARCH), so the lab compares one kernel version on both.
ARCHES = ("amd64", "arm64")


def host_arch():
    """The Debian architecture of this machine (the lab's default --arch)."""
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def pin_for(key, arch="amd64"):
    """PINS[key] for a Debian architecture: same suite and version, that flavour."""
    pin = PINS[key]
    if arch == "amd64":
        return pin
    return Pin(pin.suite, pin.release.replace("-amd64", f"-{arch}"), pin.version,
               pin.release_re.replace("-amd64", f"-{arch}"), pin.split)


@dataclass
class Tree:
    """An unpacked kernel: what the guest runner needs from it."""
    root: Path
    release: str
    version: str
    vmlinuz: Path
    build: Path    # headers with the generated files: /lib/modules/R/build
    source: Path   # the -common headers: /lib/modules/R/source
    moddir: Path   # lib/modules/R of the package (modules.dep, kernel/...)
    modular_virtio: bool  # virtio-pci / virtiofs are modules: boot needs an initramfs

    @property
    def arch(self):
        """Debian architecture: the flavour uname -r ends with (6.12.95+deb12-arm64)."""
        return self.release.rsplit("-", 1)[1]

    @property
    def needs_cx16_hidden(self):
        # Debian's qemu 7.2 TCG crashes pre-6.18 guests after cmpxchg16b; 7.x needs cx16.
        major, minor = (int(x) for x in re.match(r"(\d+)\.(\d+)", self.release).groups())
        return (major, minor) < (6, 18)


def note(msg):
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def cache_dir(arg=None):
    return Path(arg or os.environ.get("LSTRACE_LAB_CACHE") or DEFAULT_CACHE).resolve()


def _vkey(s):
    """Sort key for release strings: numbers compare as numbers."""
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]


# ---------------------------------------------------------------- private apt index
class Apt:
    """apt-get/apt-cache on an index of one suite that lives in the cache only."""

    def __init__(self, cache: Path, suite: str, arch: str = "amd64"):
        self.dir = cache / "apt" / (suite if arch == "amd64" else f"{suite}-{arch}")
        self.suite, self.arch = suite, arch
        self.conf = self.dir / "apt.conf"

    def _setup(self):
        for sub in ("lists/partial", "archives/partial", "parts"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        mirror = MIRRORS["debian-security" if self.suite.endswith("-security") else "debian"]
        (self.dir / "sources.list").write_text(f"deb {mirror} {self.suite} main\n")
        d = self.dir
        # Own state, lists, cache and sources; the real dpkg status only so apt can resolve names.
        self.conf.write_text(f'''Dir::State "{d}";
Dir::State::Lists "{d}/lists";
Dir::State::status "/var/lib/dpkg/status";
Dir::Cache "{d}";
Dir::Cache::archives "{d}/archives";
Dir::Etc::SourceList "{d}/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::Etc::Preferences "{d}/parts/none";
Dir::Etc::PreferencesParts "{d}/parts";
Dir::Etc::Trusted "/etc/apt/trusted.gpg";
Dir::Etc::TrustedParts "/etc/apt/trusted.gpg.d";
APT::Architecture "{self.arch}";
APT::Architectures "{self.arch}";
Acquire::Languages "none";
Acquire::Retries "2";
''')

    def _run(self, *args, cwd=None):
        env = dict(os.environ, APT_CONFIG=str(self.conf), LC_ALL="C")
        p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
        if p.returncode:
            raise FetchError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stderr.strip()}")
        return p.stdout

    def update(self, force=False):
        self._setup()
        lists = list((self.dir / "lists").glob("*_Packages*"))
        fresh = lists and time.time() - min(f.stat().st_mtime for f in lists) < INDEX_MAX_AGE
        if force or not fresh:
            note(f"updating private apt index for {self.suite} ({self.arch})")
            self._run("apt-get", "update", "-q")

    def names(self, regex):
        out = self._run("apt-cache", "pkgnames", "linux-")
        return sorted({n for n in out.split() if re.match(regex, n)})

    def versions(self, pkg):
        """Versions of pkg this suite offers (apt-cache madison: archive only, not dpkg status)."""
        out = self._run("apt-cache", "madison", pkg)
        return [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]

    def depends(self, pkg, version):
        out = self._run("apt-cache", "show", f"{pkg}={version}")
        m = re.search(r"^Depends: (.*)$", out, re.M)
        return [d.strip().split()[0] for alt in (m.group(1).split(",") if m else [])
                for d in alt.split("|")[:1]]

    def download(self, pkg, version, dest: Path):
        self._run("apt-get", "download", "-q", f"{pkg}={version}", cwd=dest)


# ---------------------------------------------------------------- resolve, fetch, unpack
def _packages(apt, pin, release, version):
    """All packages to unpack for one release: the image (not signed: no shim needed) + headers."""
    image = [f"linux-binary-{release}", f"linux-base-{release}"] if pin.split \
        else [f"linux-image-{release}-unsigned"]
    pkgs = [(p, version) for p in image] + [(f"linux-headers-{release}", version)]
    # headers-R depends on its -common tree and the kbuild package (versions named in the deps)
    for dep in apt.depends(f"linux-headers-{release}", version):
        if re.match(r"^linux-(headers|kbuild|base)-\S*\d", dep) and dep not in dict(pkgs):
            vers = apt.versions(dep)
            if not vers:
                raise FetchError(f"{dep} (needed by linux-headers-{release}) is not in {pin.suite}")
            pkgs.append((dep, version if version in vers else vers[0]))
    return pkgs


def _resolve(apt, key, pin):
    """(release, version): the pin if the suite still has it, else the newest of that line."""
    if pin.version in apt.versions(_image_name(pin, pin.release)):
        return pin.release, pin.version
    releases = [re.match(pin.release_re, n).group(1) for n in apt.names(pin.release_re)]
    releases = [r for r in releases if apt.versions(_image_name(pin, r))]
    if not releases:
        raise FetchError(f"no kernel matching {pin.release_re} in {pin.suite}")
    release = max(releases, key=_vkey)
    version = apt.versions(_image_name(pin, release))[0]  # madison lists newest first
    note(f"pinned {key} kernel {pin.release} {pin.version} is gone from {pin.suite}; "
         f"using the newest there: {release} {version}")
    return release, version


def _image_name(pin, release):
    return f"linux-binary-{release}" if pin.split else f"linux-image-{release}-unsigned"


def _describe(root: Path, release, version):
    """Find the kernel, headers and modules in an unpacked tree (layouts differ per generation)."""
    def first(*cands):
        for c in cands:
            if (root / c).exists():
                return root / c
        raise FetchError(f"{release}: none of {cands} in {root}")

    vmlinuz = first(f"boot/vmlinuz-{release}", f"usr/lib/modules/{release}/vmlinuz",
                    f"lib/modules/{release}/vmlinuz")
    moddir = first(f"usr/lib/modules/{release}", f"lib/modules/{release}")
    build = first(f"usr/src/linux-headers-{release}")
    common = sorted((root / "usr/src").glob("linux-headers-*-common"))
    source = common[0] if common else build
    config = first(f"boot/config-{release}", f"usr/lib/modules/{release}/config",
                   f"usr/src/linux-headers-{release}/.config").read_text()
    modular = bool(re.search(r"^CONFIG_(VIRTIO_PCI|VIRTIO_FS|FUSE_FS)=m$", config, re.M))
    return Tree(root, release, version, vmlinuz, build, source, moddir, modular)


def load_tree(path: Path):
    meta = path / "tree.json"
    if not meta.is_file():
        return None
    d = json.loads(meta.read_text())
    return _describe(path, d["release"], d["version"])


def cached_trees(cache: Path):
    return [t for p in sorted((cache / "kernels").glob("*")) if (t := load_tree(p))]


def _unpack(cache, apt, pkgs, release, version):
    name = f"{release}_{version}"
    debs = cache / "debs" / name
    debs.mkdir(parents=True, exist_ok=True)
    for pkg, ver in pkgs:
        if not list(debs.glob(f"{pkg}_*.deb")):
            note(f"downloading {pkg} {ver}")
            # into a temporary directory first: an interrupted download leaves no .deb behind
            with tempfile.TemporaryDirectory(dir=debs) as part:
                apt.download(pkg, ver, Path(part))
                for deb in Path(part).glob("*.deb"):
                    deb.rename(debs / deb.name)
    final = cache / "kernels" / name
    # Unpack into a temporary sibling and rename: a half-unpacked tree has no tree.json and
    # is never mistaken for a complete one.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache / "kernels"))
    try:
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
        tree = _describe(tmp, release, version)  # fail now if something is missing
        if (tree.moddir / "kernel").is_dir() and not (tree.moddir / "modules.dep").exists():
            # Debian ships no modules.dep (dpkg's postinst makes it): make it for the
            # initramfs and for modprobe in the guest.
            subprocess.run(["depmod", "-b", str(tree.moddir.parents[2]), release], check=True)
        (tmp / "tree.json").write_text(json.dumps(
            {"release": release, "version": version, "packages": [p for p, _ in pkgs]}))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except (subprocess.CalledProcessError, OSError) as e:
        raise FetchError(f"unpacking {name}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load_tree(final)


class CacheLock:
    """One fetcher at a time per cache (flock on CACHE/.lock); name: another lock file, e.g.
    one per root, so a long root build does not hold up kernel fetches."""

    def __init__(self, cache, name=".lock"):
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "kernels").mkdir(exist_ok=True)
        self.f = open(cache / name, "w")

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def fetch(key, cache: Path, arch: str = "amd64") -> Tree:
    """The unpacked tree for kernel `key` (6.1, 6.12, 7) of a Debian architecture: from the
    cache, else downloaded."""
    pin = pin_for(key, arch)
    with CacheLock(cache):
        # Fast path, offline: the pinned tree is already complete.
        tree = load_tree(cache / "kernels" / f"{pin.release}_{pin.version}")
        if tree:
            return tree
        apt = Apt(cache, pin.suite, arch)
        for fresh in (False, True):
            try:
                apt.update(force=fresh)
                release, version = _resolve(apt, key, pin)
                tree = load_tree(cache / "kernels" / f"{release}_{version}")
                if tree:
                    return tree
                return _unpack(cache, apt, _packages(apt, pin, release, version),
                               release, version)
            except FetchError as e:
                if fresh:
                    raise
                # a day-old index may name files the mirror no longer has
                note(f"{e}\nretrying with a fresh index")
