"""What the running kernel has, read from its BTF (never from the version string)."""
import functools
import struct

BTF_PATH = "/sys/kernel/btf/vmlinux"
KIND = {"func": 12, "var": 14, "struct": 4}
# bytes that follow struct btf_type, per kind: (fixed, per vlen entry)
_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8),
          14: (4, 0), 15: (0, 12), 17: (4, 0), 19: (0, 12)}


@functools.lru_cache(maxsize=1)
def _types() -> dict:
    """{(kind, name): type id} of every named type in vmlinux BTF."""
    with open(BTF_PATH, "rb") as f:
        data = f.read()
    magic, _ver, _fl, hdr_len, type_off, type_len, str_off, str_len = \
        struct.unpack_from("<HBBIIIII", data, 0)
    if magic != 0xEB9F:
        raise ValueError("not BTF")
    types = hdr_len + type_off
    strs = hdr_len + str_off
    out = {}
    pos, end, tid = types, types + type_len, 0
    while pos < end:
        tid += 1
        name_off, info, _ = struct.unpack_from("<III", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if name_off:
            s = data.index(b"\0", strs + name_off)
            out.setdefault((kind, data[strs + name_off:s].decode()), tid)
        fixed, per = _EXTRA.get(kind, (0, 0))
        pos += 12 + fixed + per * vlen
    return out


def has(kind: str, name: str) -> bool:
    return (KIND[kind], name) in _types()


def type_id(kind: str, name: str):
    return _types().get((KIND[kind], name))


def generation() -> str:
    """'A', 'B' or 'C' as in kernel-map §1."""
    if has("func", "bpf_task_storage_get_recur"):
        return "B"
    if has("var", "bpf_task_storage_busy"):
        return "A"
    return "C"


def info() -> dict:
    import os
    return {"release": os.uname().release, "generation": generation(),
            "res_spin_lock": has("func", "bpf_res_spin_lock"),
            "cgrp_storage": has("func", "bpf_cgrp_storage_get"),
            "task_storage_busy": has("var", "bpf_task_storage_busy"),
            "cgrp_storage_busy": has("var", "bpf_cgrp_storage_busy")}
