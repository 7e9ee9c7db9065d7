"""lstrace: live per-CPU health of BPF local storage and its locks."""
__version__ = "0.1.0"
