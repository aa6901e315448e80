"""Two guards of a memory folder that SQLite alone does not give.

- `WriterLock`: one writing process per folder. SQLite would serialise two writers' commits, but
  each would serve its own stale index (one kept returning an edit the other had deleted). The
  lock is an advisory `flock` on `writer.lock`, released by the kernel when the holder dies, so a
  kill -9 never leaves a stale lock; the file holds the holder's pid for the error message.
- `AckMark`: `edits.acked` holds the log position (last sequence number, highest edit id) of the
  last change acknowledged to a caller, written and fsynced after the commit and before the
  caller is answered. It lives outside `edits.sqlite-wal`, so when that file is deleted,
  truncated or damaged (SQLite then silently drops its frames), `open` sees the log behind the
  mark and refuses instead of serving a memory with acknowledged edits missing.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
import zlib
from pathlib import Path

from lte.errors import UserError

LOCK_FILE, ACK_FILE = "writer.lock", "edits.acked"
_ACK = struct.Struct("<qqI")  # last seq, highest edit id, crc32 of the two


def disk_error(error: OSError, path: Path, doing: str) -> UserError:
    """One line for an OSError while writing a memory file (full disk, size limit, permissions)."""
    if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        why = "the disk is full (or a file-size limit was hit); free space and retry"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "the folder is not writable (check its permissions)"
    else:
        why = error.strerror or str(error)
    return UserError(f"cannot {doing}: {why}", file=str(path))


class WriterLock:
    """Exclusive advisory lock on a memory folder, held while a writer has it open."""

    def __init__(self, folder: Path, wait_s: float = 0.0):
        self.path = Path(folder) / LOCK_FILE
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise disk_error(e, self.path, "take the memory's writer lock") from e
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(self.fd)
                    self.fd = None
                    raise UserError(
                        f"another process (pid {holder or 'unknown'}) is writing to this memory; "
                        f"one writer per folder: stop it, or send the change through it (e.g. "
                        f"the HTTP API of `lte serve`)", file=str(Path(folder))) from None
                time.sleep(0.1)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def holder(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


class AckMark:
    """The last acknowledged log position of a folder, kept in `edits.acked`."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / ACK_FILE
        self._fd = None

    def read(self) -> tuple[int, int] | None:
        """(last seq, highest id), or None when there is no usable mark (older memories)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if len(data) < _ACK.size:
            return None
        seq, max_id, crc = _ACK.unpack(data[:_ACK.size])
        if zlib.crc32(struct.pack("<qq", seq, max_id)) != crc:
            return None
        return seq, max_id

    def write(self, seq: int, max_id: int) -> None:
        # One 20-byte write at offset 0 and one fsync: far below a sector, so it lands whole.
        data = _ACK.pack(seq, max_id, zlib.crc32(struct.pack("<qq", seq, max_id)))
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            os.pwrite(self._fd, data, 0)
            os.fsync(self._fd)
        except OSError as e:
            raise disk_error(e, self.path, "record the acknowledged position") from e

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
