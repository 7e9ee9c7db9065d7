"""One test file per probe module: tests/probes/test_<probe>.py checks what
lstrace/probes/<probe>.py declares and counts (tests/test_probe_modules.py
checks every module at once through the registry and names no probe).  A
package, so its module names never clash with tests/guest's."""
