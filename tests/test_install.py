"""Every program lstrace's code, tests, benchmarks and scripts run comes from a
package scripts/install.sh installs (or one every Debian system has).

A fresh machine has only what install.sh installs: a program that was
installed by hand on a developer's machine passes CI there and fails on a new
one (kmod/depmod did: 11 lab tests failed).  The programs are collected from
the sources themselves: argv[0] of subprocess/os.exec calls and shutil.which
names in Python (module constants and wrapper programs such as `timeout`
followed), and the commands of the shell scripts.
"""
import ast
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "scripts" / "install.sh"
PY_DIRS = ("lstrace", "tests", "benchmarks", "scripts", "dashboards")
PY_SCRIPTS = ("benchmarks/run", "tests/lab/run")
SHELL_SCRIPTS = ("scripts/install.sh", ".ci/run", "tests/lab/guest-init.sh")
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "which",
           "execv", "execvp", "execvpe", "execl", "execlp"}
BUILTINS = {"cd", "echo", "printf", "read", "test", "exit", "return", "trap", "eval", "shift",
            "wait", "true", "false", "ulimit", "umask", "unset", "type", "export", "local", "set",
            "command", "break", "continue", "source", ".", ":", "[", "[["}
WRAPPERS = {"timeout", "env", "taskset", "setpriv", "nice", "stdbuf"}
# words before the command they run (their own arguments are not commands)
PREFIX_WORDS = {"if", "then", "else", "elif", "while", "until", "do", "exec", "!", "{", "time"}
BLOCK_ENDS = {"fi", "done", "esac", "}"}
SEPARATORS = {";", "&&", "||", "|", "(", "`", "$(", "&", ";;"}


# ------------------------------------------------------------------ Python
def _constants(tree):
    """Module-level NAME = <expr>: the string constants inside each expression."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            strs = [n.value for n in ast.walk(node.value)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            if strs:
                out[node.targets[0].id] = strs
            if isinstance(node.value, ast.Dict):     # NAME[key]: one of its values
                out[node.targets[0].id + "[]"] = [
                    n.value for v in node.value.values for n in ast.walk(v)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return out


def _alternatives(node, local, every):
    """The program names an argv[0] expression can stand for ([] when dynamic)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name):
        return local.get(node.id, [])
    if isinstance(node, ast.Attribute):          # guest.QEMU: a constant of another module
        return every.get(node.attr, [])
    if isinstance(node, ast.Subscript):          # QEMUS[arch], guest.QEMUS[arch]: a dict's values
        d = node.value
        name = d.id if isinstance(d, ast.Name) else d.attr if isinstance(d, ast.Attribute) else ""
        return (local if isinstance(d, ast.Name) else every).get(name + "[]", [])
    return []


def _looks_like_program(s):
    return bool(re.fullmatch(r"(/[\w.+-]+)+|[A-Za-z][\w.+-]*", s)) and not s.startswith("-")


def _argv_programs(args, local, every):
    """Programs of one argv list: argv[0], and the program a wrapper (timeout ...) runs."""
    progs = []
    for el in args:
        alts = [a for a in _alternatives(el, local, every) if _looks_like_program(a)]
        if not alts:
            if progs:
                continue
            break
        progs.append(alts)
        if not any(os.path.basename(a) in WRAPPERS for a in alts):
            break
    return progs


def python_programs(path, every):
    tree = ast.parse(path.read_text(), str(path))
    local = {**every, **_constants(tree)}
    found = []
    comp_iters = {}      # comprehension variable -> constants it iterates over
    for node in ast.walk(tree):
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            for gen in node.generators:
                if isinstance(gen.target, ast.Name) and isinstance(gen.iter, (ast.Tuple, ast.List)):
                    comp_iters[gen.target.id] = gen.iter.elts
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else \
            node.func.id if isinstance(node.func, ast.Name) else ""
        if name not in RUNNERS:
            continue
        first = node.args[0]
        if isinstance(first, (ast.List, ast.Tuple)):
            progs = _argv_programs(first.elts, local, every)
        elif isinstance(first, ast.Name) and first.id in comp_iters:
            progs = [_alternatives(e, local, every) for e in comp_iters[first.id]]
        elif name == "which" or name.startswith("exec"):
            progs = [_alternatives(first, local, every)]
        else:
            continue
        found += [(tuple(p), f"{path.relative_to(ROOT)}:{node.lineno}") for p in progs if p]
    return found


# ------------------------------------------------------------------ shell
def _shell_tokens(line):
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()`")
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def shell_programs(path):
    """Commands of a POSIX shell script: the first word at each command position."""
    text = path.read_text()
    functions = set(re.findall(r"^\s*([A-Za-z_]\w*)\s*\(\)", text, re.M))
    found, continued, skip_to = [], False, None
    for lineno, line in enumerate(text.splitlines(), 1):
        was_continued, continued = continued, line.rstrip().endswith("\\")
        try:
            tokens = _shell_tokens(line)
        except ValueError:          # a quote opened on this line closes on a later one
            continue
        at_command, in_case = not was_continued, False
        if skip_to != {")"}:        # only an array's words carry over to the next line
            skip_to = None
        for i, tok in enumerate(tokens):
            if skip_to:                             # for ... ; / case patterns ... )
                if tok in skip_to:
                    at_command, skip_to = tok != "in", None
                    in_case = in_case or tok == "in"
                continue
            if tok in SEPARATORS:
                at_command = True
                if tok == ";;" and in_case:
                    skip_to = {")"}
                continue
            if not at_command:
                continue
            if tok in PREFIX_WORDS or re.match(r"^\w+\+?=", tok):
                if tok.endswith("=") and i + 1 < len(tokens) and tokens[i + 1] == "(":
                    skip_to = {")"}                 # arr=( words ): not commands
                continue
            at_command = False
            if tok in BLOCK_ENDS:
                continue
            if tok == "for":
                skip_to = {";", "do"}
            elif tok == "case":
                skip_to = {"in"}
                in_case = True
            elif tok == "esac":
                in_case = False
            elif tok in functions or not _looks_like_program(tok) or tok in BUILTINS:
                continue
            else:
                found.append(((tok,), f"{path.relative_to(ROOT)}:{lineno}"))
        if in_case and skip_to == {"in"}:
            skip_to = None
    return found


def collect():
    files = [p for d in PY_DIRS for p in (ROOT / d).rglob("*.py")] + \
        [ROOT / s for s in PY_SCRIPTS]
    trees = {p: ast.parse(p.read_text(), str(p)) for p in files}
    every = {}
    for t in trees.values():
        every.update(_constants(t))
    found = [f for p in files for f in python_programs(p, every)]
    found += [f for s in SHELL_SCRIPTS for f in shell_programs(ROOT / s)]
    return found


# ------------------------------------------------------------------ packages
def install_packages():
    """Package names in install.sh's pkgs=(...) / pkgs+=(...) lists (variables left out)."""
    text = re.sub(r"(^|\s)#.*", "", INSTALL.read_text())     # comments
    names = set()
    for body in re.findall(r"^\s*pkgs\+?=\(((?:[^()]|\$\([^)]*\))*)\)", text, re.M):
        names.update(w for w in body.split() if re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", w))
    return names


def installed_closure(names):
    """The named packages and everything they depend on, plus Essential/required ones."""
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends",
                          "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                          "--no-enhances", *sorted(names)], capture_output=True, text=True)
    closure = {ln.strip().split(":")[0] for ln in out.stdout.splitlines()
               if ln and not ln.startswith(" ")}
    q = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Essential} ${Priority}\n"],
                       capture_output=True, text=True)
    base = {f[0] for f in (ln.split() for ln in q.stdout.splitlines())
            if len(f) == 3 and (f[1] == "yes" or f[2] == "required")}
    return closure | names | base


def provider(program):
    """(path, package) of an installed program, or (None, None)."""
    path = program if program.startswith("/") else shutil.which(program)
    if not path or not os.path.exists(path):
        return None, None
    real = os.path.realpath(path)
    # merged /usr: dpkg may know /bin/x for /usr/bin/x and the other way round
    aliases = [re.sub(r"^/usr/(s?bin|lib)/", r"/\1/", c) for c in (path, real)] + \
        [re.sub(r"^/(s?bin|lib)/", r"/usr/\1/", c) for c in (path, real)]
    for cand in dict.fromkeys([path, real, *aliases]):
        r = subprocess.run(["dpkg", "-S", cand], capture_output=True, text=True)
        if r.returncode == 0:
            return path, r.stdout.split(":")[0].split(",")[0].strip()
    return path, None


def test_collector_finds_what_we_know_is_run():
    progs = {a for alts, _ in collect() for a in alts}
    for known in ("depmod", "qemu-system-x86_64", "qemu-system-aarch64", "timeout", "cpio", "zstd", "bpftool",
                  "clang", "promtool", "prometheus", "tmux", "dpkg", "apt-get", "cc",
                  "/usr/sbin/funccount-bpfcc", "busybox", "virtiofsd", "setpriv", "taskset"):
        assert known in progs, f"the collector no longer sees {known}"


def missing_programs(packages):
    """One line per program run that no package in `packages` (with their
    dependencies and Debian's required set) provides."""
    ok_packages = installed_closure(packages)
    where = {}
    for alts, site in collect():
        where.setdefault(alts, []).append(site)
    problems = []
    for alts, sites in sorted(where.items()):
        found = [(a, *provider(a)) for a in alts]
        if any(pkg in ok_packages for _, _, pkg in found):
            continue
        installed = [(a, p, pkg) for a, p, pkg in found if p]
        if not installed:
            problems.append(f"{' or '.join(alts)} (run at {', '.join(sites[:3])}) is not installed "
                            "here: add the package that provides it to scripts/install.sh")
        else:
            a, p, pkg = installed[0]
            problems.append(f"{a} (run at {', '.join(sites[:3])}) comes from package "
                            f"{pkg or '(none: not from a package)'}, which scripts/install.sh "
                            "does not install")
    return problems


needs_dpkg = pytest.mark.skipif(not shutil.which("dpkg"),
                                reason="not a Debian/Ubuntu system (no dpkg)")


@needs_dpkg
def test_every_program_run_is_installed_by_install_sh():
    problems = missing_programs(install_packages())
    assert not problems, "\n".join(problems)


@needs_dpkg
def test_a_missing_package_is_named():
    """The bug this test exists for: without kmod, depmod (lab kernels) is named."""
    problems = missing_programs(install_packages() - {"kmod"})
    assert any(p.startswith("depmod ") and "kmod" in p for p in problems), problems
