"""Find kernel headers for BCC, the way a custom kernel needs it.

BCC compiles against /lib/modules/$(uname -r)/build.  Distribution and
custom kernels often have no matching headers package; lstrace's programs
use no kernel struct layouts (offsets come from BTF at run time), so the
nearest installed headers work: lstrace links them where BCC looks.
"""
import os
import re
from dataclasses import dataclass
from pathlib import Path

SRC = Path(os.environ.get("LSTRACE_HEADERS_ROOT", "/usr/src"))


@dataclass(frozen=True)
class Headers:
    build: str       # directory BCC compiles against
    source: str
    exact: bool      # matches the running kernel
    note: str


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


def wire_for_bcc(headers: Headers, release, modules_root=Path("/lib/modules")):
    """Make BCC use `headers`: BCC 0.26 only looks at /lib/modules/<release>
    (BCC_KERNEL_SOURCE is not enough: it checks that tree first), so link
    build/ and source/ there, as a headers package for this kernel would.
    Returns the directory linked, or None when nothing had to be done."""
    if headers.exact:
        return None
    tree = modules_root / release
    tree.mkdir(parents=True, exist_ok=True)
    for name, target in (("build", headers.build), ("source", headers.source)):
        link = tree / name
        if link.is_symlink():
            link.unlink()       # a stale link to headers since removed
        if not link.exists():
            link.symlink_to(target)
    return str(tree)
