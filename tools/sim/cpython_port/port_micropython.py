"""`micropython` for one boot (see loader.py): const, schedule, and harmless no-ops."""


def const(value):
    return value


def schedule(func, arg):
    # A soft IRQ: runs from the event loop soon, never nested in other firmware code.
    _boot.call_soon(func, arg)  # noqa: F821 (set by the loader)


def alloc_emergency_exception_buf(size):
    pass


def opt_level(level=None):
    return 0 if level is None else None


def mem_info(verbose=False):
    pass


def heap_lock():
    return 0


def heap_unlock():
    return 0
