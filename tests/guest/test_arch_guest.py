"""Runs inside a kernel-lab guest of either architecture (tests/lab/test_guests.py boots
x86-64 and arm64 ones): lstrace/arch.py's entry for this machine against the running kernel.
The numbers are checked where they take effect: a bpf() call through bpfsys answers as bpf()
does, and the bpf_syscall probe (fexit on the table's wrapper, reading the table's pt_regs
members) counts exactly the errors a workload made (tests/guest/test_bpf_syscall.py)."""
import errno
import json
import os
import subprocess
import sys

from lstrace import arch, bpfcalls


def test_the_table_has_this_machine():
    a = arch.current()
    assert a.debian == os.environ.get("LAB_ARCH", a.debian)
    assert os.uname().release.endswith("-" + a.debian)


def test_pt_regs_members_and_wrapper_are_this_kernels():
    from lstrace.kernel import Kernel
    btf = Kernel().btf
    a = arch.current()
    for member in (a.regs_arg0[0], a.regs_arg1[0], a.regs_nr):
        assert btf.member_offset("pt_regs", member) is not None, member
    assert btf.func_id(a.syscall_wrapper("bpf")) is not None


def test_syscall_numbers_reach_the_right_syscalls():
    """bpf(BPF_MAP_DELETE_ELEM) on a closed fd is EBADF from bpf() itself (a wrong number
    would be another syscall's answer or ENOSYS); pidfd_open of ourselves is a pidfd."""
    closed = os.open("/", os.O_RDONLY)
    os.close(closed)
    assert bpfcalls.map_delete_elem(closed, b"\0" * 4) == -errno.EBADF
    fd = bpfcalls.pidfd_open(os.getpid())
    try:
        # anon_inode:[pidfd] before 6.9, pidfd:[INODE] on pidfs since
        assert "pidfd" in os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_doctor_names_the_wrapper():
    r = subprocess.run([sys.executable, "-m", "lstrace", "doctor", "--json", "--probes",
                        "bpf_syscall"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    p = {p["name"]: p for p in json.loads(r.stdout)["probes"]}["bpf_syscall"]
    assert (p["mode"], p["function"]) == ("fentry", arch.current().syscall_wrapper("bpf")), p
