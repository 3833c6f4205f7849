"""The lock of a run directory (``RUN_DIR/run.lock``), held by a run for its whole life, so a
second run on the same directory stops at once naming the holder."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Optional, Union

from spikedistill.atomic import WriteError, describe_os_error
from spikedistill.engine.distributed import warn
from spikedistill.errors import ConfigError, SpikeDistillError

try:  # POSIX: the run lock is a flock (released by the kernel however its holder ends)
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_EXCL lock files
    fcntl = None


#: the lock file of a run directory, present while a run holds it
LOCK_NAME = "run.lock"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True
    return True


class RunLock:
    """The lock of a run directory, held for the run's life (rank 0 only).

    ``RUN_DIR/run.lock`` records the holder (pid, host, start time, command). Where the file
    system supports it the lock is an exclusive ``fcntl.flock`` on that file, which the kernel
    drops when the holder dies however it dies; a record left by such a holder is taken over
    with a warning. Without ``flock`` (another platform, a file system without locks) the file
    is created with ``O_EXCL``, and a record of a process of this host that no longer runs is
    taken over with a warning. A live holder: :class:`~spikedistill.errors.SpikeDistillError`
    naming it. :meth:`release` removes the file.
    """

    def __init__(self, run_dir: Union[str, os.PathLike]):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: Optional[int] = None
        self.created_dir = False

    # -- the holder record
    @staticmethod
    def record() -> Dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)[:300]}

    def read_holder(self) -> Dict[str, Any]:
        """The record in the lock file ({} when missing or unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _busy(self, holder: Dict[str, Any]) -> SpikeDistillError:
        who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
               f"{holder.get('started', '?')}" if holder else "a process that left no record")
        return SpikeDistillError(f"run directory '{self.run_dir}' is in use by another run "
                                 f"({who}; lock file {self.path}); wait for it to end or choose "
                                 "another run.name")

    def _stale_warning(self, holder: Dict[str, Any]) -> None:
        warn(f"taking over the lock {self.path} of pid {holder.get('pid', '?')} on "
             f"{holder.get('host', '?')} (started {holder.get('started', '?')}), which ended "
             "without releasing it")

    def _write_record(self, fd: int) -> None:
        data = (json.dumps(self.record(), sort_keys=True) + "\n").encode("utf-8")
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, data)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise WriteError(f"cannot write '{self.path}': {describe_os_error(exc)}",
                             exc.errno) from None

    # -- acquiring
    def acquire(self) -> "RunLock":
        """Take the lock or raise naming its holder."""
        try:
            self.created_dir = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"config key 'run.name': '{self.run_dir}' exists and is a file, "
                              "expected a run directory") from None
        except NotADirectoryError:
            raise ConfigError(f"config key 'run.out_dir': a parent of '{self.run_dir}' is a "
                              "file, expected a folder") from None
        if fcntl is not None:
            try:
                return self._acquire_flock()
            except _NoFlock:
                pass
        return self._acquire_exclusive()

    def _acquire_flock(self) -> "RunLock":
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy(self.read_holder()) from None
            except OSError as exc:  # ENOLCK, EOPNOTSUPP, ...: no flock on this file system
                os.close(fd)
                raise _NoFlock() from exc
            # the holder before us may have removed the file while we opened it: retry on
            # the file that is there now
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = self.read_holder()
            if previous:
                self._stale_warning(previous)
            self._write_record(fd)
            self.fd = fd
            return self
        raise self._busy(self.read_holder())

    def _acquire_exclusive(self) -> "RunLock":
        for attempt in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self.read_holder()
                pid = holder.get("pid")
                if (attempt == 0 and isinstance(pid, int) and
                        holder.get("host") == socket.gethostname() and not _pid_alive(pid)):
                    self._stale_warning(holder)
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                raise self._busy(holder) from None
            self._write_record(fd)
            self.fd = fd
            return self
        raise self._busy(self.read_holder())

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent); a run directory the lock
        created and nothing else wrote to is removed too (a run that failed while building
        leaves no empty directory behind)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None
        if self.created_dir:
            with contextlib.suppress(OSError):
                self.run_dir.rmdir()  # only when empty

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class _NoFlock(Exception):
    """flock is not available on the lock file's file system."""



__all__ = ["LOCK_NAME", "RunLock"]
