"""Raw BTF blobs built type by type (a fake for parsing and glue generation:
tests/test_btf.py, tests/probes/test_helpers.py)."""
import struct

from lstrace import btf as B


class BlobBuilder:
    """Builds a minimal raw BTF blob, type by type."""

    def __init__(self):
        self.types, self.strings = [], b"\0"

    def s(self, name):
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, kind, name, vlen, size_type, extra=b"", kind_flag=0):
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types.append(struct.pack("<III", self.s(name), info, size_type) + extra)
        return len(self.types)          # ids start at 1

    def blob(self):
        t = b"".join(self.types)
        hdr = struct.pack("<HBBIIIII", B.MAGIC, 1, 0, 24, 0, len(t), len(t), len(self.strings))
        return hdr + t + self.strings


def sample_btf(nargs):
    b = BlobBuilder()
    i_int = b.add(B.INT, "int", 0, 4, struct.pack("<I", 32))
    i_u64 = b.add(B.INT, "long long unsigned int", 0, 8, struct.pack("<I", 64))
    t_u64 = b.add(B.TYPEDEF, "u64", 0, i_u64)
    s_foo = b.add(B.STRUCT, "foo", 2, 16, struct.pack("<III", b.s("a"), i_int, 0)
                  + struct.pack("<III", b.s("b"), t_u64, 64))
    p_foo = b.add(B.PTR, "", 0, s_foo)
    params = [("owner", p_foo), ("flags", t_u64), ("mode", i_int), ("x", t_u64)][:nargs]
    proto = b.add(B.FUNC_PROTO, "", len(params), p_foo,
                  b"".join(struct.pack("<II", b.s(n), t) for n, t in params))
    b.add(B.FUNC, "bpf_local_storage_update", 0, proto)
    b.add(B.VAR, "bpf_task_storage_busy", 0, i_int, struct.pack("<I", 1))
    return B.BTF(b.blob())
