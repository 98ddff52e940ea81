"""File primitives below everything that reads or writes a file: bounded non-blocking reads, atomic
writes, flock locks, signals deferred over a critical section, fault hook points, the controls byte grammar."""

from ..lazy import exports

_WHERE = {
    "EnvLock": "locking",
    "FileLock": "locking",
    "LockBusy": "locking",
    "UnsafeFile": "atomic",
    "atomic_write": "atomic",
    "check_regular": "atomic",
    "fsync_directory": "atomic",
    "read_bounded": "atomic",
    "signals_deferred": "signals",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
