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

from codeswarm.errors import RouterLocked
from codeswarm.paths import lock_path

log = logging.getLogger("codeswarm.router")

_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


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


def lock_holder(state_dir: Path) -> int | None:
    """PID of the process holding the router lock on this state dir, without touching the lock
    (taking it, even shared and briefly, could make a starting router fail). Read from /proc/locks:
    the state dir's inode (this build) or router.pid's (older builds). None when nobody holds it."""
    inodes = set()
    for p in (state_dir, lock_path(state_dir)):
        try:
            st = os.stat(p, follow_symlinks=False)
        except OSError:
            continue
        inodes.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    if not inodes:
        return None
    try:
        with open("/proc/locks") as f:
            table = f.read()
    except OSError:
        return None
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[3] != "WRITE":
            continue
        try:
            pid = int(parts[4])
            major, minor, ino = parts[5].split(":")
            key = (int(major, 16), int(minor, 16), int(ino))
        except ValueError:
            continue
        if key in inodes:
            return pid
    return None
