"""The helper family: local-storage helpers and kernel functions, one probe each.

A *helper probe* is a kernel function probed at exit (fexit, else kretprobe;
entry programs only where needed) whose return value is classified into an
outcome (kernel/bpf/bpf_local_storage.c and its callers).  Adding one is one line in HELPERS
(catalogue.py).  This package is the family's whole unit, one module a job:
catalogue (the probes, their return kinds and roles), planning (trial attach
per exact function, blind spots), glue (the generated C and its attach
points), counters (blocks, decode, failure events), metrics (families) and
view (top and hist rows): together the interface every probe module has
(lstrace/probes/__init__.py), re-exported here.
"""
from .catalogue import (COUNTS, CPU_KEYS, EVENT_SOURCES, GROUPS, HELPERS, MAP_PROBES, NAMES, ORDER,
                        RET_ERR_PTR, RET_ERR_PTR_OR_NULL, RET_ERRNO, RET_KIND_CODE, RET_PTR_OR_NULL, RET_VOID, ROLE_CODE,
                        HelperProbe, helper, helper_index, is_map_probe)
from .counters import EVENT_REASONS, blocks, decode, event_counts, event_keys
from .glue import (C_FRAGMENT, MISSED_CALLS, attach_points, defines, entry_exit_names, glue,
                   helper_glue, needs_entry)
from .metrics import (CPU_REASONS, GEN_CPU_REASONS, HTAB_LOCK_REASONS, INNER_PROBES,
                      by_cpu_maps, families, map_families)
from .planning import BLIND_SPOT_TEXT, blind_spots, fall_back, plan
from .view import NO_HIST, TOP_SECTION, cpu_counts, cpu_failures, hist_slots, hist_what, top_row

__all__ = [
    "COUNTS", "CPU_KEYS", "EVENT_SOURCES", "ORDER", "GROUPS", "HELPERS", "MAP_PROBES", "NAMES", "RET_ERR_PTR", "RET_ERR_PTR_OR_NULL",
    "RET_ERRNO", "RET_KIND_CODE", "RET_PTR_OR_NULL", "RET_VOID", "ROLE_CODE", "HelperProbe",
    "helper", "helper_index", "is_map_probe",
    "EVENT_REASONS", "blocks", "decode", "event_counts", "event_keys",
    "C_FRAGMENT", "MISSED_CALLS", "attach_points", "defines", "entry_exit_names", "glue",
    "helper_glue", "needs_entry",
    "CPU_REASONS", "GEN_CPU_REASONS", "HTAB_LOCK_REASONS", "INNER_PROBES", "by_cpu_maps",
    "families", "map_families",
    "BLIND_SPOT_TEXT", "blind_spots", "fall_back", "plan",
    "NO_HIST", "TOP_SECTION", "cpu_counts", "cpu_failures", "hist_slots", "hist_what", "top_row",
]
