"""The store's lifecycle: one open/closed flag its collections share, and closing at interpreter exit.

A script that ends without ``store.close()`` must not crash the interpreter: background threads still
inside FAISS or USearch when Python finalizes abort the process. Every open store is therefore closed
by an ``atexit`` hook (bounded: threads finish their current step, nothing waits for a full index).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from typing import Protocol

from vectorstore.errors import ReadOnlyStoreError, StoreClosedError

__all__ = ["Lifecycle", "close_at_exit"]


class _Closable(Protocol):
    def close(self) -> None: ...


class Lifecycle:
    """Whether the store is open; collections check it before every operation."""

    def __init__(self, what: str, *, read_only: bool = False) -> None:
        self._what = what
        self.closed = False
        self.read_only = read_only

    def check(self) -> None:
        """Raise :class:`StoreClosedError` once the store is closed."""
        if self.closed:
            raise StoreClosedError(f"{self._what} is closed; open the store again to use it")

    def check_writable(self) -> None:
        """Raise :class:`ReadOnlyStoreError` for a write to a store opened read-only."""
        self.check()
        if self.read_only:
            raise ReadOnlyStoreError(f"{self._what} is open read-only; nothing was written")


_OPEN: weakref.WeakSet[_Closable] = weakref.WeakSet()
_LOCK = threading.Lock()
_REGISTERED = False


def close_at_exit(store: _Closable) -> None:
    """Close ``store`` when the interpreter exits, if it is still open then."""
    global _REGISTERED
    with _LOCK:
        _OPEN.add(store)
        if not _REGISTERED:
            atexit.register(_close_all)
            _REGISTERED = True


def _close_all() -> None:
    for store in list(_OPEN):
        # at exit: SQLite holds everything; never turn a clean exit into a crash
        with contextlib.suppress(Exception):
            store.close()
