"""`python -m lstrace.loader FD PARENT_PID`: the loader child."""
import sys

from .child import main

main(sys.argv)
