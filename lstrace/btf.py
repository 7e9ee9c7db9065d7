"""A small reader for the kernel's BTF (/sys/kernel/btf/vmlinux).

lstrace needs three things from BTF: which functions and per-CPU variables
exist (the local-storage generation), the exact prototype of a function (the
fexit program of bpf_local_storage_update is generated from it), and the BTF
id of a function (for trial attaches).  Parsing the raw format with struct
keeps lstrace free of a bpftool dependency at run time.
"""
import struct
from dataclasses import dataclass

MAGIC = 0xEB9F
# kind numbers (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, \
    FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(1, 20)

# bytes that follow the 12-byte common header, per kind (vlen = items)
_EXTRA_FIXED = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
_EXTRA_PER_ITEM = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}
_QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BTFError(ValueError):
    pass


@dataclass(frozen=True)
class Param:
    name: str
    type: str     # C spelling, e.g. "struct bpf_local_storage_map *"
    size: int     # bytes (8 for pointers)


@dataclass(frozen=True)
class Prototype:
    name: str
    ret: str          # C spelling of the return type, "void" when none
    ret_size: int     # 0 for void
    params: tuple     # of Param

    @property
    def returns_pointer(self):
        return self.ret.endswith("*")


class BTF:
    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF blob too short")
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != MAGIC:
            raise BTFError("not a BTF blob (bad magic)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        need = hdr_len + max(type_off + type_len, str_off + str_len)
        if need > len(data):
            raise BTFError(f"truncated BTF blob: its header needs {need} bytes, it has "
                           f"{len(data)}")
        self._types_raw = data[hdr_len + type_off: hdr_len + type_off + type_len]
        self._strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self._offsets = [0]       # id -> offset in _types_raw; id 0 is void
        self._by_name = {}        # (kind, name) -> id of first such type
        try:
            self._parse_index()
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            raise BTFError(f"corrupt BTF blob: {e}")

    @classmethod
    def load(cls, path="/sys/kernel/btf/vmlinux"):
        with open(path, "rb") as f:
            return cls(f.read())

    def _str(self, off):
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def _parse_index(self):
        raw, pos = self._types_raw, 0
        while pos < len(raw):
            name_off, info, _ = struct.unpack_from("<III", raw, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            tid = len(self._offsets)
            self._offsets.append(pos)
            if name_off and kind in (FUNC, VAR, STRUCT, UNION, TYPEDEF):
                self._by_name.setdefault((kind, self._str(name_off)), tid)
            pos += 12 + _EXTRA_FIXED.get(kind, 0) + _EXTRA_PER_ITEM.get(kind, 0) * vlen

    def _hdr(self, tid):
        name_off, info, size_type = struct.unpack_from("<III", self._types_raw, self._offsets[tid])
        return self._str(name_off) if name_off else "", (info >> 24) & 0x1F, info & 0xFFFF, size_type

    def find(self, kind, name):
        return self._by_name.get((kind, name))

    def has_func(self, name):
        return self.find(FUNC, name) is not None

    def has_var(self, name):
        return self.find(VAR, name) is not None

    def func_id(self, name):
        return self.find(FUNC, name)

    def type_name(self, tid):
        """C spelling of a type and its size in bytes."""
        name, kind, _vlen, size_type = self._hdr(tid) if tid else ("void", 0, 0, 0)
        if tid == 0:
            return "void", 0
        if kind == PTR:
            inner, _ = self.type_name(size_type)
            return (inner + " *" if not inner.endswith("*") else inner + "*"), 8
        if kind in (STRUCT, UNION):
            return f"{'struct' if kind == STRUCT else 'union'} {name}", size_type
        if kind in (ENUM, ENUM64):
            return f"enum {name}", size_type
        if kind in (INT, FLOAT):
            return name, size_type
        if kind == FWD:
            return f"struct {name}", 0
        if kind == TYPEDEF:
            return name, self.type_name(size_type)[1]
        if kind in _QUALIFIERS:
            return self.type_name(size_type)
        if kind == FUNC_PROTO:
            return "void", 0     # only reached through a pointer: "void *"
        return name or "void", size_type

    def prototype(self, func):
        fid = self.func_id(func)
        if fid is None:
            return None
        _name, _kind, _vlen, proto_id = self._hdr(fid)
        _n, kind, vlen, ret_tid = self._hdr(proto_id)
        if kind != FUNC_PROTO:
            raise BTFError(f"{func}: FUNC does not point at a FUNC_PROTO")
        base = self._offsets[proto_id] + 12
        params = []
        for i in range(vlen):
            name_off, tid = struct.unpack_from("<II", self._types_raw, base + 8 * i)
            cname, size = self.type_name(tid)
            params.append(Param(self._str(name_off) if name_off else f"arg{i}", cname, size))
        ret, ret_size = self.type_name(ret_tid)
        return Prototype(func, ret, ret_size, tuple(params))

    def member_offset(self, struct_name, member):
        """Byte offset of `member` in `struct struct_name` (searching anonymous
        struct/union members too); None when absent.  lstrace passes these
        offsets to its BPF programs, so they never depend on header layouts."""
        sid = self.find(STRUCT, struct_name)
        return None if sid is None else self._member_offset(sid, member)

    def struct_size(self, struct_name):
        """sizeof(struct struct_name) from BTF; None when absent."""
        sid = self.find(STRUCT, struct_name)
        return None if sid is None else self._hdr(sid)[3]

    def _member_offset(self, tid, member):
        _name, kind, vlen, _size = self._hdr(tid)
        kind_flag = struct.unpack_from("<I", self._types_raw, self._offsets[tid] + 4)[0] >> 31
        base = self._offsets[tid] + 12
        for i in range(vlen):
            name_off, mtid, off = struct.unpack_from("<III", self._types_raw, base + 12 * i)
            bits = off & 0xFFFFFF if kind_flag else off
            if name_off and self._str(name_off) == member:
                return bits // 8
            if not name_off:
                inner = self._strip(mtid)
                if self._hdr(inner)[1] in (STRUCT, UNION):
                    sub = self._member_offset(inner, member)
                    if sub is not None:
                        return bits // 8 + sub
        return None

    def _strip(self, tid):
        while tid and self._hdr(tid)[1] in _QUALIFIERS:
            tid = self._hdr(tid)[3]
        return tid
