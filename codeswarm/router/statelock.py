"""One router per state dir (issue 12, finding 4).

The lock used to be an flock on router.pid alone: delete that file and a second router locks a
new inode and starts, and both ingest the same outboxes. Now the exclusive flock is taken on the
state directory itself (opened O_DIRECTORY): a directory that holds the router's files cannot be
unlinked, and a new one at the same path would be empty. router.pid is still written (and locked,
as before, for older tools) so that `router stop|status` find the pid; it is information, not the lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from codeswarm.errors import CodeswarmError
from codeswarm.paths import lock_path

log = logging.getLogger("codeswarm.router")

_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


class RouterLocked(CodeswarmError):
    pass


def _holder(state_dir: Path) -> str:
    try:
        return lock_path(state_dir).read_text().strip() or "?"
    except OSError:
        return "?"


def _locked(state_dir: Path) -> RouterLocked:
    return RouterLocked(f"another router (pid {_holder(state_dir)}) already runs on {state_dir}")


def take_lock(state_dir: Path) -> tuple[int, int]:
    """Lock the state dir and router.pid, write our pid; returns both fds (closed by release_lock)."""
    dir_fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(dir_fd)
        if exc.errno in _BUSY:
            raise _locked(state_dir) from None
        raise
    try:
        pid_fd = os.open(lock_path(state_dir), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        os.close(dir_fd)
        raise
    try:
        fcntl.flock(pid_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(pid_fd, 0)
        os.write(pid_fd, f"{os.getpid()}\n".encode())
    except OSError as exc:
        os.close(pid_fd)
        os.close(dir_fd)
        if exc.errno in _BUSY:  # an older router build holding only the pid file
            raise _locked(state_dir) from None
        raise
    return dir_fd, pid_fd


def release_lock(fds: tuple[int, int]) -> None:
    for fd in fds:
        os.close(fd)
