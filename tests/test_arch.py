"""lstrace/arch.py, the one table of what differs by architecture: its numbers
against the kernel's own uapi headers, its register names against this
kernel's BTF, its users, and an architecture it lacks (no root needed for the
table; the unknown-architecture runs are real processes under setarch)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lstrace import arch, decode, probes, syscalls
from lstrace.errors import EXIT_UNAVAILABLE, Unavailable

ROOT = Path(__file__).resolve().parent.parent
# the kernel's syscall tables as linux-libc-dev installs them (a dependency of
# libc6-dev, which clang pulls in): x86-64 has its own, arm64 the generic one
UNISTD = {"x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
          "aarch64": Path("/usr/include/asm-generic/unistd.h")}


def _nr(header, name):
    m = re.search(rf"^#define __NR(?:3264)?_{name}\s+(\d+)", header.read_text(), re.M)
    assert m, f"__NR_{name} not in {header}"
    return int(m.group(1))


@pytest.mark.parametrize("machine", sorted(arch.TABLE))
def test_syscall_numbers_are_the_kernels(machine):
    a = arch.TABLE[machine]
    header = UNISTD[machine]
    assert header.exists(), f"{header} missing (apt-get install linux-libc-dev)"
    assert (a.nr_bpf, a.nr_perf_event_open, a.nr_pidfd_open) == (
        _nr(header, "bpf"), _nr(header, "perf_event_open"), _nr(header, "pidfd_open"))


def test_the_issues_numbers():
    x86, arm = arch.TABLE["x86_64"], arch.TABLE["aarch64"]
    assert (x86.nr_bpf, x86.nr_perf_event_open) == (321, 298)
    assert (arm.nr_bpf, arm.nr_perf_event_open) == (280, 241)
    assert (x86.syscall_wrapper("bpf"), arm.syscall_wrapper("bpf")) == (
        "__x64_sys_bpf", "__arm64_sys_bpf")
    assert (x86.debian, arm.debian) == ("amd64", "arm64")


def test_this_machine_uses_the_table():
    a = arch.current()
    assert a.machine == os.uname().machine
    assert (syscalls.SYS_BPF, syscalls.SYS_PERF_EVENT_OPEN, syscalls.SYS_PIDFD_OPEN) == (
        a.nr_bpf, a.nr_perf_event_open, a.nr_pidfd_open)
    # the bpf_syscall probe's view is the table's
    assert probes.bpf_syscall.SYSCALL_ARCH[a.machine] == {
        "func": a.syscall_wrapper("bpf"), "arg0": a.regs_arg0, "arg1": a.regs_arg1,
        "nr": a.regs_nr, "NR": a.nr_bpf}
    assert set(a.entry_frames) <= set(decode.HOOK_PREFIXES)


def test_register_names_are_in_this_kernels_pt_regs():
    """The members the bpf_syscall probe reads exist in this kernel's struct
    pt_regs (the arm64 guest checks arm64's: tests/guest/test_arch_guest.py)."""
    from lstrace.btf import BTF
    btf = BTF(Path("/sys/kernel/btf/vmlinux").read_bytes())
    a = arch.current()
    for member in (a.regs_arg0[0], a.regs_arg1[0], a.regs_nr):
        assert btf.member_offset("pt_regs", member) is not None, member
    assert btf.func_id(a.syscall_wrapper("bpf")) is not None


def test_no_other_module_names_an_architecture():
    """Syscall numbers, wrapper prefixes and register names live in arch.py only."""
    pat = re.compile(r"__x64_sys|__arm64_sys|\bSYS_\w+ = \d|orig_ax|syscallno|"
                     r"__TARGET_ARCH_(x86|arm64)")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "lstrace").rglob("*.py")
                 if p.name != "arch.py" and pat.search(p.read_text())]
    assert offenders == []


def test_unknown_machine_is_refused(monkeypatch):
    monkeypatch.setattr(arch, "machine", lambda: "riscv64")
    assert arch.lookup() is None
    with pytest.raises(Unavailable) as e:
        arch.current()
    assert e.value.exit_code == EXIT_UNAVAILABLE == 69
    assert "riscv64" in str(e.value) and "\n" not in str(e.value)


def test_no_syscall_without_a_number(monkeypatch):
    """syscalls never falls back to another architecture's number."""
    with pytest.raises(Unavailable):
        syscalls.syscall(None, 0)


@pytest.mark.parametrize("argv", [["doctor", "--json"], ["serve", "--once"], ["doctor"]])
def test_unknown_architecture_one_line_exit_69(argv):
    """A real run on a machine lstrace does not know: setarch i686 makes uname -m
    say i686 for the process (a 32-bit personality on this x86-64 kernel)."""
    r = subprocess.run(["setarch", "i686", sys.executable, "-m", "lstrace", *argv],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == EXIT_UNAVAILABLE, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.splitlines() == [
        "lstrace: unsupported architecture 'i686' (uname -m): lstrace knows the syscall "
        "numbers and registers of aarch64, x86_64 only"], r.stderr
    assert r.stdout == ""


def test_bpf_command_numbers_are_written_once():
    """enum bpf_cmd numbers live in layout.py's tables (BPF_CMDS, BPF_OTHER_CMDS);
    bpfsys names them from there, nothing else in Python spells one."""
    from lstrace import bpfsys, layout
    assert bpfsys.CMD["PROG_LOAD"] == 5 and bpfsys.CMD["ENABLE_STATS"] == 32
    assert not set(layout.BPF_CMDS) & set(layout.BPF_OTHER_CMDS)
    names = "|".join(bpfsys.CMD)
    pat = re.compile(rf"\b(BPF_)?({names})\s*=\s*\d|bpf(sys\.bpf)?\(\s*\d+\s*,")
    offenders = [str(p.relative_to(ROOT)) for d in ("lstrace", "tests", "benchmarks")
                 for p in (ROOT / d).rglob("*.py")
                 if p.name != "layout.py" and pat.search(p.read_text())]
    assert offenders == []
