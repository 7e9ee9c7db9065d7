#!/usr/bin/env python3
"""Generates dashboards/lstrace.json (run it after editing; the JSON is committed).

Every query filters on the job / instance / cpu template variables and uses
$__rate_interval; tests/test_serve_e2e.py runs each expression against a real
Prometheus scraping `lstrace serve`.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job",instance=~"$instance"'
CSEL = SEL + ',cpu=~"$cpu"'          # only for the per-CPU families (README "Metrics")
PSEL = SEL + ',probe=~"$probe"'
RI = "[$__rate_interval]"


def target(expr, legend="", ref="A", **kw):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}
    t.update(kw)
    return t


_id = [0]


def panel(title, kind, targets, x, y, w=12, h=8, desc="", **kw):
    _id[0] += 1
    p = {"id": _id[0], "title": title, "type": kind, "datasource": DS, "description": desc,
         "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets}
    p.update(kw)
    return p


def timeseries(title, targets, x, y, unit="short", desc="", **kw):
    return panel(title, "timeseries", targets, x, y, desc=desc,
                 fieldConfig={"defaults": {"unit": unit}, "overrides": []}, **kw)


def heatmap(title, metric, x, y, sel, desc):
    # histograms are per probe (per CPU only with serve --per-cpu-latency): summed by le
    return panel(title, "heatmap",
                 [target(f'sum by (le) (rate({metric}_bucket{{{sel}}}{RI}))',
                         "{{le}}", format="heatmap")],
                 x, y, desc=desc,
                 options={"calculate": False, "yAxis": {"unit": "s"},
                          "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges"}})


def variable(name, query, label, multi=True, include_all=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name}, "definition": query,
            "refresh": 2, "sort": 3 if name == "cpu" else 1, "multi": multi,
            "includeAll": include_all, "allValue": ".*",
            "current": {"selected": True, "text": "All", "value": "$__all"}}


def build():
    panels = [
        timeseries("Helper failures/s by reason",
                   [target(f'sum by (reason) (rate(lstrace_helper_failures_total{{{PSEL},'
                           f'reason!="not_found"}}{RI}))', "{{reason}}")], 0, 0, "ops",
                   "Failed local-storage helper calls of the selected probes, all CPUs "
                   "(not_found is a normal miss and left out)."),
        timeseries("Failures/s by CPU (helpers + rqspinlock)",
                   [target(f'sum by (cpu, reason) (rate(lstrace_helper_cpu_failures_total'
                           f'{{{CSEL}}}{RI}))', "helpers {{reason}} cpu {{cpu}}"),
                    target(f'sum by (cpu, errno) (rate(lstrace_rqspinlock_cpu_failures_total'
                           f'{{{CSEL}}}{RI}))', "rqspinlock {{errno}} cpu {{cpu}}", "B")],
                   12, 0, "ops",
                   "CPU-local failures: helper calls that failed on a held busy counter or an "
                   "rqspinlock deadlock/timeout, and rqspinlock failures seen at "
                   "lock:contention_end."),
        timeseries("Busy ratio per helper (busy failures / calls)",
                   [target(f'sum by (probe) (rate(lstrace_helper_failures_total{{{PSEL},'
                           f'reason="busy"}}{RI})) / sum by (probe) (rate('
                           f'lstrace_helper_calls_total{{{PSEL}}}{RI}))', "{{probe}}")],
                   0, 8, "percentunit",
                   "Share of calls that failed because the CPU's busy counter was held "
                   "(generation A/B recursion guard)."),
        timeseries("rqspinlock deadlocks and timeouts by kind and caller",
                   [target(f'sum by (errno, kind, caller) (rate(lstrace_rqspinlock_failures_total'
                           f'{{{SEL}}}{RI}))', "{{errno}} {{kind}} {{caller}}")], 12, 8, "ops",
                   "EDEADLK: AA/ABBA deadlock detected and the acquisition aborted; "
                   "ETIMEDOUT: gave up after the timeout."),
        heatmap("Helper latency", "lstrace_helper_latency_seconds", 0, 16, PSEL,
                "log2 buckets of helper call latency (selected probes, all CPUs)."),
        heatmap("rqspinlock wait", "lstrace_rqspinlock_wait_seconds", 12, 16, SEL,
                "Time spent in the rqspinlock slow path (all CPUs)."),
        timeseries("Helper calls/s by CPU",
                   [target(f'sum by (cpu) (rate(lstrace_helper_calls_total{{{CSEL},'
                           f'probe=~"$probe"}}{RI}))', "cpu {{cpu}}")], 0, 24, "ops",
                   "Calls of the selected probes on each CPU."),
        panel("Probe status", "table",
              [target(f'max by (instance, probe, mode) (lstrace_probe_attached{{{SEL}}})', "",
                      format="table", instant=True, range=False),
               target(f'max by (instance, release, generation) (lstrace_kernel_info{{{SEL}}})',
                      "", "B", format="table", instant=True, range=False)],
              0, 32, w=12, h=10, desc="How each probe is attached (fentry, kprobe, tracepoint) "
              "or unavailable; kernel release and local-storage generation.",
              transformations=[{"id": "organize", "options": {
                  "excludeByName": {"Time": True},
                  "renameByName": {"Value #A": "attached", "Value #B": "kernel"}}}]),
        timeseries("bpf() syscall errors/s",
                   [target(f'sum by (cmd, errno, map_type) (rate(lstrace_bpf_syscall_errors_total'
                           f'{{{SEL}}}{RI}))', "{{cmd}} {{map_type}} {{errno}}")], 12, 32, "ops"),
        timeseries("BPF program runs/s",
                   [target(f'sum by (program) (rate(lstrace_bpf_program_runs_total{{{SEL}}}{RI}))',
                           "{{program}}")], 0, 42, "ops"),
        timeseries("BPF program average run time",
                   [target(f'sum by (program) (rate(lstrace_bpf_program_run_seconds_total{{{SEL}}}'
                           f'{RI})) / sum by (program) (rate(lstrace_bpf_program_runs_total'
                           f'{{{SEL}}}{RI}))', "{{program}}")], 12, 42, "s"),
        timeseries("BPF program recursion misses/s",
                   [target(f'sum by (program) (rate(lstrace_bpf_program_recursion_misses_total'
                           f'{{{SEL}}}{RI}))', "{{program}}")], 0, 50, "ops",
                   "Runs the kernel skipped because the program was already running on the CPU."),
        timeseries("lstrace scrape duration",
                   [target(f'lstrace_scrape_duration_seconds{{{SEL}}}', "{{instance}}")],
                   12, 50, "s"),
        panel("Failing programs", "table",
              [target(f'sort_desc(sum by (program, probe, reason) (increase('
                      f'lstrace_helper_failures_by_program_total{{{SEL}}}[$__range])))', "",
                      format="table", instant=True, range=False)],
              0, 58, w=12, h=10,
              desc="Failures in the dashboard's time range by the BPF program on the failing "
              "call's stack (names; the first 20 to fail, later ones \"other\"; \"kernel\": "
              "no BPF program, e.g. a bpf() syscall; \"unattributed\": failure events lost in "
              "lstrace's per-CPU ring between two scrapes).",
              transformations=[{"id": "organize", "options": {
                  "excludeByName": {"Time": True}, "renameByName": {"Value": "failures"}}}]),
        panel("Blind spots", "table",
              [target(f'max by (probe, mode, blind_spot) (lstrace_probe_blind_spot{{{SEL}}})',
                      "", format="table", instant=True, range=False)],
              12, 58, w=12, h=10,
              desc="What the attached probes cannot see on this kernel: kprobe mode under "
              "bpf_prog_active (and syscall tracepoint programs before 7.x, uncounted before "
              "6.7); rqspinlock failures that never reach lock:contention_end (pending_path, "
              "pending_timeout; pre_queue_aa on 6.19+). `lstrace doctor` explains each. "
              "Empty: no attached probe has a blind spot on this kernel in its mode.",
              fieldConfig={"defaults": {"noValue": "none: every attached probe sees all "
                                        "its calls here"}, "overrides": []},
              transformations=[{"id": "organize", "options": {
                  "excludeByName": {"Time": True, "Value": True}}}]),
        # --probes +maps (opt-in): the hash-map family's update/delete; empty without it
        timeseries("Hash-map operation failures/s by CPU (--probes +maps)",
                   [target(f'sum by (cpu, reason) (rate(lstrace_map_cpu_failures_total'
                           f'{{{CSEL}}}{RI}))', "{{reason}} cpu {{cpu}}")], 0, 68, "ops",
                   "Hash-map updates/deletes (htab, LRU, per-CPU variants) that failed on "
                   "this CPU's lock: busy = the per-CPU map_locked guard (-EBUSY, before "
                   "6.15), deadlock / timeout = the bucket's rqspinlock (6.15+). Empty unless "
                   "lstrace runs with --probes +maps."),
        timeseries("Hash-map operations/s by map type and outcome (--probes +maps)",
                   [target(f'sum by (map_type) (rate(lstrace_helper_calls_total{{{CSEL}}}{RI})'
                           f' * on (job, instance, probe) group_left (map_type) max by (job, '
                           f'instance, probe, map_type) (lstrace_map_probe_info{{{SEL}}}))',
                           "{{map_type}} calls"),
                    target(f'sum by (map_type, reason) (rate(lstrace_helper_failures_total{{'
                           f'{SEL},reason!="not_found"}}{RI}) * on (job, instance, probe) '
                           f'group_left (map_type) max by (job, instance, probe, map_type) ('
                           f'lstrace_map_probe_info{{{SEL}}}))', "{{map_type}} {{reason}}",
                           "B")],
                   12, 68, "ops",
                   "Calls and failures of the map probes by the map type their function "
                   "serves (lstrace_map_probe_info; deletes of per-CPU maps count under hash "
                   "/ lru_hash: one function serves both). Empty unless lstrace runs with "
                   "--probes +maps."),
        timeseries("rqspinlock failures/s by lock user and kind",
                   [target(f'sum by (caller, kind) (rate(lstrace_rqspinlock_failures_total'
                           f'{{{SEL}}}{RI}))', "{{caller}} {{kind}}")], 0, 76, "ops",
                   "Failed rqspinlock acquisitions by the lock's user (res_spin_lock: BPF "
                   "programs' own bpf_res_spin_lock, counted at the kfunc's stream report; "
                   "htab, local_storage, ringbuf, ...) and kind (AA, ABBA, timeout, unknown). "
                   "How complete each user's count is: the \"Lock users' view\" table."),
        panel("Lock users' view", "table",
              [target(f'max by (lock_user, view) (lstrace_rqspinlock_view_info{{{SEL}}})', "",
                      format="table", instant=True, range=False)],
              12, 76, w=12, h=8,
              desc="exact: every failure of this lock user is counted, at the traceable "
              "function it returns through; partial: only the queued slow path's, at "
              "lock:contention_end; none: no view. `lstrace doctor` says why, per kernel.",
              transformations=[{"id": "organize", "options": {
                  "excludeByName": {"Time": True, "Value": True}}}]),
    ]
    return {
        "title": "lstrace: BPF local storage and rqspinlock",
        "uid": "lstrace",
        "tags": ["lstrace", "bpf", "ebpf"],
        "timezone": "",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "__inputs": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0, "refresh": 1},
            variable("job", "label_values(lstrace_build_info, job)", "Job"),
            variable("instance", 'label_values(lstrace_build_info{job=~"$job"}, instance)',
                     "Instance"),
            variable("cpu", f'label_values(lstrace_guard_skips_total{{{SEL}}}, cpu)', "CPU"),
            variable("probe", f'label_values(lstrace_probe_attached{{{SEL}}}, probe)', "Probe"),
        ]},
        "panels": panels,
    }


if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstrace.json")
    with open(out, "w") as f:
        json.dump(build(), f, indent=2)
        f.write("\n")
