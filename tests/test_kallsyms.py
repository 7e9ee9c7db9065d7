"""Addresses resolve to the function that contains them, or to nothing: never
to the nearest section-end marker (`lstrace top` once named `_einittext` as
the kernel caller of BPF programs' rqspinlock failures)."""
from lstrace.kallsyms import MAX_LAST_SPAN, Kallsyms

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000100 T htab_map_update_elem
ffffffff81000400 t bpf_res_spin_lock
ffffffff82278000 T _etext
ffffffff837f6000 T _sinittext
ffffffff837f6100 T some_init_fn
ffffffff837f68d0 T _einittext
ffffffff83b28748 R __start_runtime_ptr_USER_PTR_MAX
ffffffff83c00000 D rqspinlock_held_locks
ffffffffc00238d0 t bpf_prog_ea71044608b1aceb_lst_contention_begin	[bpf]
ffffffffc00280d4 t bpf_prog_44aa0a5c9d499710_repro_aa	[bpf]
ffffffffc0201000 t ftrace_trampoline	[__builtin__ftrace]
ffffffffc0300000 t some_module_fn	[some_mod]
ffffffffc0300000 d some_module_data	[some_mod]
"""


def load(tmp_path):
    f = tmp_path / "kallsyms"
    f.write_text(KALLSYMS)
    return Kallsyms.load(f)


def test_functions_and_bpf_programs_resolve(tmp_path):
    ks = load(tmp_path)
    assert ks.resolve(0xffffffff81000110) == ("htab_map_update_elem", 0x10)
    assert ks.resolve(0xffffffff81000400) == ("bpf_res_spin_lock", 0)
    assert ks.resolve(0xffffffffc00280f0) == ("bpf_prog_44aa0a5c9d499710_repro_aa", 0x1c)
    assert ks.resolve(0xffffffffc0300010) == ("some_module_fn", 0x10)
    assert ks.data["rqspinlock_held_locks"] == 0xffffffff83c00000
    assert "some_module_data" not in ks.data


def test_addresses_no_symbol_covers_are_unknown(tmp_path):
    ks = load(tmp_path)
    assert ks.resolve(0xffffffff80000000) is None            # before the first symbol
    assert ks.resolve(0xffffffff82278010) is None            # past _etext
    assert ks.resolve(0xffffffff837f7000) is None            # past _einittext
    assert ks.resolve(0xffffffffc0300000 + MAX_LAST_SPAN) is None   # far past the last
    assert ks.range_of("htab_map_update_elem") == (0xffffffff81000100, 0xffffffff81000400)


def test_bpf_programs_loaded_later_resolve_after_a_refresh(tmp_path):
    ks = load(tmp_path)
    later = 0xffffffffc0030000
    assert ks.resolve(later + 8) == ("bpf_prog_44aa0a5c9d499710_repro_aa", later + 8 - 0xffffffffc00280d4)
    (tmp_path / "kallsyms").write_text(KALLSYMS + f"{later:x} t bpf_prog_0123456789abcdef_new\t[bpf]\n")
    assert not ks.refresh_bpf()                      # rate-limited: just read
    assert ks.refresh_bpf(min_interval=0)
    assert ks.resolve(later + 8) == ("bpf_prog_0123456789abcdef_new", 8)
    assert ks.resolve(0xffffffff81000110) == ("htab_map_update_elem", 0x10)   # vmlinux kept


def test_trampolines_cover_one_page_at_most(tmp_path):
    ks = load(tmp_path)
    assert ks.resolve(0xffffffffc0201010) == ("ftrace_trampoline", 0x10)
    assert ks.resolve(0xffffffffc0201000 + 8192) is None     # e.g. a program loaded since


def test_this_hosts_kallsyms_no_nearest_marker():
    """On the real /proc/kallsyms: the gaps around the kernel's section ends and
    the module/BPF area resolve to nothing (this host once named `_einittext`)."""
    import os
    import pytest
    if os.geteuid() != 0:
        pytest.skip("needs root: /proc/kallsyms addresses are hidden otherwise")
    ks = Kallsyms.load()
    names = list(ks.names)
    for marker in ("_etext", "_einittext"):
        if marker in names:
            start, end = ks.range_of(marker)
            assert ks.resolve(start + 16) is None and ks.resolve(end - 1) is None, marker
    i = len(ks.addrs) - 1
    assert ks.resolve(ks.addrs[i] + MAX_LAST_SPAN) is None
    for j in (k for k, n in enumerate(names) if n == "ftrace_trampoline"):
        if j + 1 == len(names) or ks.addrs[j + 1] - ks.addrs[j] > 8192:
            assert ks.resolve(ks.addrs[j] + 8192) is None
    assert ks.resolve(0xffffffffc0000000 - 4096) is None or \
        ks.resolve(0xffffffffc0000000 - 4096)[0] not in ("_einittext", "_etext", "_end")


def test_unloaded_programs_keep_their_names_until_replaced(tmp_path):
    """A program that failed and was unloaded before the next read still names
    its frames (its events outlive it in the ring), not the program below it;
    a program loaded at its address replaces it."""
    ks = load(tmp_path)
    gone = 0xffffffffc00280d4                        # repro_aa
    (tmp_path / "kallsyms").write_text(KALLSYMS.replace(
        "ffffffffc00280d4 t bpf_prog_44aa0a5c9d499710_repro_aa\t[bpf]\n", ""))
    assert ks.refresh_bpf(min_interval=0)
    assert ks.resolve(gone + 8) == ("bpf_prog_44aa0a5c9d499710_repro_aa", 8)
    (tmp_path / "kallsyms").write_text(KALLSYMS.replace(
        "44aa0a5c9d499710_repro_aa", "0123456789abcdef_newer"))
    assert ks.refresh_bpf(min_interval=0)
    assert ks.resolve(gone + 8) == ("bpf_prog_0123456789abcdef_newer", 8)


def test_a_pickled_copy_keeps_refreshing(tmp_path):
    """Session's copy comes pickled from the loader child; it re-reads through
    one file opened up front (serve drops CAP_SYSLOG later: a file opened after
    that shows zero addresses)."""
    import pickle
    ks = pickle.loads(pickle.dumps(load(tmp_path)))
    later = 0xffffffffc0030000
    (tmp_path / "kallsyms").write_text(KALLSYMS + f"{later:x} t bpf_prog_0123456789abcdef_new\t[bpf]\n")
    assert ks.refresh_bpf(min_interval=0)
    fh = ks.__dict__["_fh"]
    assert ks.refresh_bpf(min_interval=0) and ks.__dict__["_fh"] is fh     # opened once
    assert ks.resolve(later + 8) == ("bpf_prog_0123456789abcdef_new", 8)
    assert "_fh" not in pickle.loads(pickle.dumps(ks)).__getstate__()
