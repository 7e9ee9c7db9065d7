"""One source for every fact C and Python share: no C file under bpf/ spells
by hand an errno value, a return-kind or role code, a counter index, a bpf()
command or syscall number, or defines a name Python emits; and every such name
the C uses is one Python emits (no root: reads the sources)."""
import re
from pathlib import Path

import pytest

from lstrace import counters, layout, probes, program
from lstrace.probes import busy_sampler, helpers, rqspinlock_kernel

ROOT = Path(__file__).resolve().parent.parent
C_FILES = sorted(p for p in (ROOT / "bpf").rglob("*") if p.suffix in (".c", ".h"))
BLOCKS = [name for name, _ in counters.Layout(len(probes.HELPERS)).blocks]

# (what, pattern) of a fact spelled by hand in code (comments stripped)
RULES = (
    # a negative number compared, returned, assigned or passed (not "a - 2")
    ("an errno value", re.compile(r"(?:[=!<>]=|\breturn|[(,?:=])\s*-\s*(?:[2-9]|\d{2,})\b")),
    ("an errno defined by hand", re.compile(r"#\s*define\s+E[A-Z0-9]+\s+\(?\d")),
    ("a return-kind code", re.compile(r"\bret_kind\s*[!=<>]=?\s*\d")),
    ("a role code", re.compile(r"\brole\s*[!=]=\s*\d")),
    ("a flags value (uapi: BPF_NOEXIST, ..._F_CREATE)", re.compile(r"\bflags\s*[!=]=\s*[1-9]")),
    ("a switch case on a number (generate the cases)", re.compile(r"\bcase\s+(?:[1-9]|\d{2,})")),
    ("a command or syscall number", re.compile(r"\b(?:cmd|nr|NR)\w*\s*[!=]=\s*\d")),
    ("a syscall number defined by hand", re.compile(r"#\s*define\s+_*NR_\w+\s+\d")),
    ("a counter index", re.compile(r"->(?:%s)\[\s*\d" % "|".join(BLOCKS))),
)
# names whose C value Python emits; C may use them, never define them
FACT_PREFIXES = ("RET_KIND_", "ROLE_", "RQ_E_", "KIND_", "BUSY_IDX_", "OUT_", "RQ_HELD_",
                 "RQ_NR_HELD", "MAX_ERRNO", "LCB_F_", "HTAB_", "MAP_KEY_", "NMI_", "PREEMPT_",
                 "TASK_PREEMPT_", "CALLER_", "LS_", "MAP_TYPE_")


def code(text):
    """C text without comments (line numbers kept)."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group().count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def violations(text):
    return [(i, what, line.strip()) for i, line in enumerate(code(text).split("\n"), 1)
            for what, pattern in RULES if pattern.search(line)]


def emitted_names():
    """Every name Python emits for the C without a kernel: the layout's -D
    flags and the kernel-free defines of the probe modules and of layout."""
    names = {f.split("=")[0][2:] for f in counters.Layout(len(probes.HELPERS)).cflags()}
    for d in (helpers.defines(None, []), busy_sampler.defines(None, []),
              layout.rq_errno_defines(), layout.rq_kind_defines()):
        names |= {k.split("(")[0] for k in d}
    names |= set(probes.rqspinlock.defines(_Kernel(), [])) | \
        set(rqspinlock_kernel.kind_defines(_Kernel()))          # checked below
    return names


@pytest.mark.parametrize("path", C_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shared_fact_spelled_by_hand(path):
    assert violations(path.read_text()) == []


@pytest.mark.parametrize("path", C_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_c_defines_no_name_python_emits(path):
    text = code(path.read_text())
    emitted = emitted_names()
    own = [n for n in re.findall(r"^\s*#\s*define\s+(\w+)", text, re.M) if n in emitted
           and not re.search(rf"#\s*ifndef\s+{n}\b", text)]     # a default is not a fact
    assert own == []


def test_fact_names_the_c_uses_are_emitted():
    used = set()
    for path in C_FILES:
        if path.parent.name != "repro":
            used |= {n for n in re.findall(r"\b[A-Z][A-Z0-9_]+\b", code(path.read_text()))
                     if n.startswith(FACT_PREFIXES)}
    assert used - emitted_names() == set()


class _NoBTF:
    def member_offset(self, *_):
        return None

    def struct_size(self, *_):
        return None


class _Kallsyms:
    def range_of(self, _):
        return None


class _Kernel:
    btf, kallsyms = _NoBTF(), _Kallsyms()
    percpu_offsets_addr = 0

    def percpu_var_addr(self, _):
        return 0


def test_kernel_facts_are_emitted_by_their_module():
    """LCB_F_SPIN: the rqspinlock module's defines(); rqspinlock_held's layout
    (BTF, else the kernel's own) and the NMI test: the core's
    (rqspinlock_kernel.kind_defines, for bpf/core/rqheld.bpf.c)."""
    assert "LCB_F_SPIN" in probes.rqspinlock.defines(_Kernel(), [])
    d = rqspinlock_kernel.kind_defines(_Kernel())
    assert {"RQ_HELD_CNT_OFF", "RQ_HELD_LOCKS_OFF", "RQ_NR_HELD", "NMI_MASK", "HELD_LOCKS",
            "PREEMPT_COUNT_VAR", "TASK_PREEMPT_OFF"} <= set(d)
    assert d["RQ_NR_HELD"] == 31 and d["RQ_HELD_LOCKS_OFF"] == 8
    assert d["NMI_MASK"] == "0xf00000" and d["HELD_LOCKS"] == 0


def test_rq_errno_macros_follow_rq_errnos():
    d = layout.rq_errno_defines()
    index = d["RQ_ERRNO_INDEX(r)"]
    for i, name in enumerate(layout.RQ_ERRNOS):
        n = getattr(__import__("errno"), name)
        assert d[f"RQ_E_{name}"] == i
        assert f"(r) == -{n} ? {i}" in index


def test_the_rules_catch_hand_spelled_facts():
    """Each rule catches the spelling the C had before (formatting only)."""
    samples = {
        "an errno value": "if (ret == -35 || ret == -110) {",
        "an errno defined by hand": "#define EBUSY 16",
        "a return-kind code": "} else if (ret_kind == 2) {",
        "a role code": "if (f->role == 1)",
        "a flags value (uapi: BPF_NOEXIST, ..._F_CREATE)": "if (ret_kind && flags == 1)",
        "a switch case on a number (generate the cases)": "case 21: return 5;",
        "a command or syscall number": "if (nr != 321)",
        "a syscall number defined by hand": "#define __NR_bpf 321",
        "a counter index": "__sync_fetch_and_add(&c->busy_held[0], 1);",
    }
    assert set(samples) == {what for what, _ in RULES}
    for what, line in samples.items():
        assert what in {w for _, w, _ in violations(line)}, line
    assert violations("__sync_fetch_and_add(&s->nest, -1); /* ret == -35 */") == []


def test_program_assembles_the_core_fragments():
    src = program.source_dir()
    for name in program.CORE_FRAGMENTS:
        assert (src / "core" / f"{name}.bpf.c").exists(), name
    assert sorted(p.stem.split(".")[0] for p in (src / "core").glob("*.bpf.c")) == \
        sorted(program.CORE_FRAGMENTS)
