"""How BCC names the programs it compiles: attach points name programs in
BCC's own spelling (the `compiled` list the loader reads from the module)."""
KFUNC_PREFIXES = ("kfunc__", "kretfunc__")


def kfunc_name(compiled, prefix, func):
    """The name BCC gave KFUNC_PROBE(func) / KRETFUNC_PROBE(func): kfunc__<func> up to
    BCC 0.30, kfunc__vmlinux__<func> from 0.31 on (its helpers.h: kfunc__<module>__<func>)."""
    for name in compiled:
        rest = name[len(prefix):] if name.startswith(prefix) else None
        if rest == func or (rest and rest.endswith("__" + func)
                            and "__" not in rest[:-len(func) - 2]):
            return name
    raise LookupError(f"BCC compiled no {prefix}...{func} program (functions: "
                      f"{', '.join(n for n in compiled if n.startswith(KFUNC_PREFIXES))})")
