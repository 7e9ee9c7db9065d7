"""The repro cases, by name, in the order they run."""
from .helper_calls import HelperCalls
from .htab import HtabBusy, HtabDeadlock
from .recursion import Recursion
from .rqspinlock import Rqspinlock
from .storage_deadlock import StorageDeadlock
from .syscall_errors import SyscallErrors
from .task_busy import TaskBusy

CASES = {c.name: c for c in (HelperCalls(), SyscallErrors(), Rqspinlock(), TaskBusy(),
                             Recursion(), HtabBusy(), HtabDeadlock(),
                             StorageDeadlock())}
