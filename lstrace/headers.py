"""Find kernel headers for BCC, the way a custom kernel needs it.

BCC compiles against /lib/modules/$(uname -r)/build.  Distribution and
custom kernels often have no matching headers package; lstrace's programs
use no kernel struct layouts (offsets come from BTF at run time), so the
nearest installed headers work.  lstrace points BCC at them for its own
compile only (BCC_KERNEL_SOURCE and include flags): nothing on the host is
linked or written.
"""
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import arch as archmod

SRC = Path(os.environ.get("LSTRACE_HEADERS_ROOT", "/usr/src"))


@dataclass(frozen=True)
class Headers:
    build: str       # the tree with the generated headers (Debian: linux-headers-R-<flavour>)
    source: str      # the tree with the rest (Debian: linux-headers-R-common)
    exact: bool      # matches the running kernel: BCC finds it by itself
    note: str

    @property
    def how(self):
        """How BCC is pointed at these headers (doctor shows it)."""
        if self.exact:
            return "BCC's default: /lib/modules/$(uname -r)/build"
        return (f"BCC_KERNEL_SOURCE={self.source} and -I {self.build}/... for the generated "
                "headers, for lstrace's own compile only (nothing linked under /lib/modules)")

    def cflags(self):
        """Include flags for the generated headers of a split tree.  BCC's kbuild_helper
        adds these itself only for /lib/modules/R/{build,source}; with BCC_KERNEL_SOURCE
        it includes relative to that one tree."""
        if self.exact or self.build == self.source:
            return []
        arch = archmod.current().kernel_dir     # the part of BCC's kbuild_helper.cc that matters
        b = self.build
        return [f"-I{b}/arch/{arch}/include/generated/uapi", f"-I{b}/arch/{arch}/include/generated",
                f"-I{b}/include", f"-I{b}/include/generated/uapi"]

    @contextmanager
    def for_bcc(self):
        """The environment BCC reads while it compiles, restored afterwards."""
        if self.exact:
            yield
            return
        old = os.environ.get("BCC_KERNEL_SOURCE")
        os.environ["BCC_KERNEL_SOURCE"] = self.source
        try:
            yield
        finally:
            if old is None:
                del os.environ["BCC_KERNEL_SOURCE"]
            else:
                os.environ["BCC_KERNEL_SOURCE"] = old


def _version_key(name):
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", name)
    return tuple(int(x or 0) for x in m.groups()) if m else (0, 0, 0)


def candidates(root=SRC):
    """linux-headers-*-<flavour> build trees under /usr/src (Debian/Ubuntu)."""
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if d.name.startswith("linux-headers-") and (d / "Makefile").exists() \
                and (d / "include").is_dir() and not d.name.endswith("-common"):
            out.append(d)
    return sorted(out, key=lambda d: _version_key(d.name))


def _source_of(build: Path) -> Path:
    """Debian splits headers into <ver>-<flavour> (build) and <ver>-common (source)."""
    src = build / "source"
    if src.exists():
        return src.resolve()
    common = build.parent / re.sub(r"-[a-z0-9]+$", "-common", build.name)
    return common if common.is_dir() else build


def find(release, modules_root=Path("/lib/modules"), root=SRC):
    """Headers for `release`: exact ones first, else the nearest lower version
    (then the nearest higher).  None when there are none at all."""
    exact = modules_root / release / "build"
    if (exact / "include").is_dir() or (exact / "Makefile").exists():
        src = modules_root / release / "source"
        return Headers(str(exact), str(src if src.exists() else exact), True,
                       f"{exact} (matches the running kernel)")
    cands = candidates(root)
    if not cands:
        return None
    want = _version_key(release)
    lower = [c for c in cands if _version_key(c.name) <= want]
    pick = lower[-1] if lower else cands[0]
    return Headers(str(pick), str(_source_of(pick)), False,
                   f"{pick} (nearest to {release}; no exact headers installed)")
