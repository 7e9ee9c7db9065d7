"""The declaration every tracepoint probe module makes (PROBE)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class TracepointProbe:
    name: str
    events: tuple      # ((category, event), ...) all must exist
    doc: str
    # (attach kind, event, BCC function in the probe's C): what Session attaches and detaches
    programs: tuple = ()

