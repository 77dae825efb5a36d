"""One writer at a time for a state file: an exclusive lock on a lock file beside it.

A run that loads a state file, learns and saves it must hold the file for its whole life, or two
runs load the same model and the last to save wins, losing the other's points. `StateLock` takes
an exclusive ``fcntl.flock`` on ``<state>.lock`` in the folder of the state file (through symbolic
links, so two names of one file share a lock), as pip and SQLite do. The operating system releases
the lock when the process ends, however it ends (even by SIGKILL), so a stale lock file is
harmless and is left in place: removing it could let a third run lock a file that another is
about to lock. Where ``fcntl`` does not exist (Windows), the lock is a no-op.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "model.json")
>>> with StateLock(path):
...     try:
...         StateLock(path).acquire()
...     except StateLocked as error:
...         print(str(error).split(" /")[0])
another online-em run is using the state file
>>> with StateLock(path):  # released: free again
...     pass

"""

from __future__ import annotations

import os

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["StateLock", "StateLocked", "lock_path"]


class StateLocked(OSError):
    """Another process holds the state file's lock."""


def lock_path(state: str | os.PathLike) -> str:
    """The lock file of a state file: beside its target, named after it.

    >>> lock_path("/tmp/model.json")
    '/tmp/model.json.lock'

    """
    return os.path.realpath(os.fspath(state)) + ".lock"


class StateLock:
    """An exclusive lock on `state`'s lock file, held from `acquire` (or ``with``) to `release`.

    `wait`: block until the other run ends, instead of raising `StateLocked`. An OSError (for
    example a missing or read-only folder) names the lock file.
    """

    def __init__(self, state: str | os.PathLike, wait: bool = False):
        self.state = os.fspath(state)
        self.path = lock_path(state)
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        if fcntl is None:  # pragma: no cover
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                raise StateLocked(
                    f"another online-em run is using the state file {self.state} (process {holder}; "
                    f"lock {self.path}): wait for it to end, or give --wait"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"%d\n" % os.getpid(), 0)  # who holds it, for the message above
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the lock

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()
