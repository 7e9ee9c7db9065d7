"""C text that Python emits into lstrace's BPF program (one helper per form)."""


def switch_cases(mapping):
    """`case K: return V;` for every K -> V: the body of a generated switch."""
    return " ".join(f"case {k}: return {v};" for k, v in mapping.items())
