"""The command's byte streams: input read in chunks, with line ends made uniform, and a buffered
stdout of its own whose failures are told apart.

Input (`Reader`): a UTF-8 byte-order mark at the start of a source is dropped; ``\\r\\n`` and a
lone ``\\r`` (old Mac line ends) both end a line, as ``\\n`` does. Only chunks that hold a
``\\r`` pay for the translation.

Output (`open_stdout`): a `io.BufferedWriter` over file descriptor 1 of its own, so that
``PYTHONUNBUFFERED=1`` does not make a system call of every line; a failed write raises
`WriteError` (say, "No space left on device") or `BrokenPipeError` once, after which the
stream discards what it is given, so the interpreter's last flush is quiet. Given a `hold` (the
labeler's signal guard), the stream sets its `critical` flag while bytes are being written: a
signal handler that raised just after a write had returned would leave the buffered writer
unaware that those bytes went out, and they would be written twice. On a pipe it first waits for
room (a signal may end that wait, nothing written) and writes at most PIPE_BUF bytes at a time,
so that such a write does not block.

>>> import io
>>> read = Reader(io.BytesIO(b"\\xef\\xbb\\xbf1\\r2\\r\\n3\\n"), 3)
>>> b"".join(iter(read, b""))
b'1\\n2\\n3\\n'

"""

from __future__ import annotations

import io
import os
import select
import stat
import sys
import typing

__all__ = ["BOM", "Reader", "WriteError", "open_stdout"]

BOM = b"\xef\xbb\xbf"


class Reader:
    """Calls return the stream's next bytes, at most `size` (b"" at its end): what one read brings,
    so that a pipe gives what it holds without waiting for more. Line ends are made ``\\n``."""

    def __init__(self, stream: typing.Any, size: int):
        self._read = getattr(stream, "read1", None) or stream.read  # a raw stream's read() does the same
        self._size = size
        self._start = True  # nothing read yet: a byte-order mark may come
        self._cr = False  # the last chunk ended with b"\r" (now b"\n"): drop a b"\n" that follows

    def __call__(self) -> bytes:
        while True:
            chunk = self._read(self._size)
            if not chunk:
                return b""
            if self._start:
                while len(chunk) < len(BOM) and BOM.startswith(chunk):
                    more = self._read(self._size)
                    if not more:
                        break
                    chunk += more
                self._start = False
                if chunk.startswith(BOM):
                    chunk = chunk[len(BOM):]
            if self._cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]
            self._cr = False
            if b"\r" in chunk:
                self._cr = chunk.endswith(b"\r")
                chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if chunk:
                return chunk


class WriteError(Exception):
    """Standard output failed for another reason than a closed pipe; the message is one line."""

    def __init__(self, error: OSError):
        super().__init__(f"write error: {error.strerror or error}")
        self.errno = error.errno


class _Stdout(io.RawIOBase):
    """File descriptor 1 as a raw stream that fails once (see the module docstring)."""

    def __init__(self, fd: int, hold: typing.Any = None):
        super().__init__()
        self._fd = fd
        self.failed = False
        self._hold = hold  # an object with a `critical` flag, set while bytes are written
        try:
            self._pipe = stat.S_ISFIFO(os.fstat(fd).st_mode) and hasattr(select, "PIPE_BUF")
        except OSError:
            self._pipe = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data) -> int:
        if self.failed:
            return len(data)
        while True:
            try:
                if self._hold is None:
                    return os.write(self._fd, data)
                return self._held_write(data)
            except BlockingIOError:  # a non-blocking descriptor: wait until it takes more
                select.select([], [self._fd], [])
            except BrokenPipeError:
                self.failed = True
                raise
            except OSError as error:
                self.failed = True
                raise WriteError(error) from None


    def _held_write(self, data) -> int:
        """One write with the hold's `critical` flag set (see the module docstring)."""
        if self._pipe:
            select.select([], [self._fd], [])  # room for PIPE_BUF bytes, or the signal's exception
            data = memoryview(data)[: select.PIPE_BUF]
        hold = self._hold
        before, hold.critical = hold.critical, True
        try:
            return os.write(self._fd, data)
        finally:
            hold.critical = before


def open_stdout(buffer_size: int = 1 << 16, hold: typing.Any = None) -> typing.BinaryIO:
    """A buffered binary stdout of the command's own on descriptor 1 (sys.stdout's byte stream
    when stdout has no descriptor, as under a test runner; /dev/null when it is closed). `hold`:
    see the module docstring."""
    if sys.stdout is None:  # started with descriptor 1 closed (>&-): nobody reads the output
        return open(os.devnull, "wb")
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return getattr(sys.stdout, "buffer", sys.stdout)
    return io.BufferedWriter(_Stdout(fd, hold), buffer_size=buffer_size)
