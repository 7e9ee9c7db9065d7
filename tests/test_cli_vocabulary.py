"""One vocabulary of flags across commands, and each unavailable-probe reason said once."""
from lstrace import reasons
from lstrace.cli import main

# parameter name -> the only spelling it may have, in any command
CANON = {"duration": ["-d", "--duration"], "interval": ["-i", "--interval"],
         "as_json": ["--json"], "mode": ["--mode"], "probe_list": ["--probes"],
         "verbose": ["-v", "--verbose"]}


def test_every_command_spells_shared_flags_the_same():
    seen = {}
    for name, cmd in main.commands.items():
        for p in cmd.params:
            if p.name in CANON:
                assert sorted(p.opts) == sorted(CANON[p.name]), (name, p.opts)
                seen.setdefault(p.name, []).append(name)
    # the flags the issue names exist where they make sense
    assert {"top", "hist", "repro"} <= set(seen["duration"])
    assert {"serve", "doctor", "top", "hist"} <= set(seen["mode"])
    assert {"serve", "doctor", "top"} <= set(seen["probe_list"])
    assert {"serve", "doctor"} <= set(seen["verbose"])


def test_probes_unavailable_for_one_reason_are_one_line():
    why = "fentry: EPERM; kprobes not supported"
    items = [(f"p{i}", "helper", why) for i in range(19)] + [("busy_sampler", "tracepoint", "x")]
    groups = reasons.group_unavailable(items)
    lines = reasons.summary_lines(groups)
    assert len(lines) == 2
    assert lines[0].startswith("19 helper probes (p0, p1, p2 and 16 more; --verbose names them)")
    assert lines[0].count(why) == 1 and lines[0].endswith(why)
    assert lines[1] == "probe busy_sampler unavailable: x"
    assert [len(g["probes"]) for g in groups] == [19, 1]
