"""A tiny busybox initramfs for kernels whose virtio-pci / virtiofs are modules (Debian 6.1).

It loads those modules (and what modules.dep says they need), mounts the host root over virtiofs
and switch_roots into guest-init.sh. Built once per kernel tree and /init, cached as TREE/initramfs-HASH.cpio.
"""
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

WANTED = ["virtio_pci", "virtiofs"]
BUSYBOX = "/bin/busybox"  # busybox-static: no shared libraries to copy
HERE = Path(__file__).resolve().parent


def _modname(path):
    name = Path(path).name
    return name.split(".ko")[0].replace("-", "_")


def _load_order(moddir: Path):
    """Module files to insmod, dependencies first (modules.dep made by depmod at unpack)."""
    deps = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[_modname(mod)] = (mod, rest.split())
    builtin = set()
    if (moddir / "modules.builtin").exists():
        builtin = {_modname(m) for m in (moddir / "modules.builtin").read_text().split()}
    order = []

    def visit(name):
        if name in builtin or any(_modname(p) == name for p in order):
            return
        if name not in deps:
            raise RuntimeError(f"module {name} is neither in modules.dep nor built in")
        path, needs = deps[name]
        for dep in needs:
            visit(_modname(dep))
        order.append(path)

    for name in WANTED:
        visit(name)
    return order


def _read_module(path: Path):
    # busybox insmod takes plain ELF only: decompress .ko.xz / .ko.gz here.
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return data


def build(tree) -> Path:
    # Named after its /init so that editing initramfs-init.sh rebuilds it.
    init = (HERE / "initramfs-init.sh").read_bytes()
    out = tree.root / f"initramfs-{hashlib.sha256(init).hexdigest()[:12]}.cpio"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory(prefix=".initramfs.", dir=tree.root) as tmp:
        root = Path(tmp) / "root"
        for d in ("bin", "dev", "proc", "sys", "newroot", "modules"):
            (root / d).mkdir(parents=True)
        shutil.copy2(BUSYBOX, root / "bin/busybox")
        (root / "init").write_bytes(init)
        os.chmod(root / "init", 0o755)
        names = []
        for rel in _load_order(tree.moddir):
            name = _modname(rel) + ".ko"
            (root / "modules" / name).write_bytes(_read_module(tree.moddir / rel))
            names.append(name)
        (root / "modules/load").write_text("\n".join(names) + "\n")
        # newc cpio, uncompressed: a few MB, and TCG would spend longer inflating it.
        files = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
        part = Path(tmp) / "initramfs.cpio"
        with open(part, "wb") as f:
            subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                           input=files, stdout=f, check=True)
        part.rename(out)  # atomic: a half-written archive never has the final name
    return out
