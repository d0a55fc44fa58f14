"""Knowing when a mailbox file grew: inotify on local filesystems, adaptive polling elsewhere.

inotify only reports changes made through this kernel. On NFS, Lustre, GPFS, CephFS, SMB or FUSE
the other side writes on another host (or in a user-space server), so no event ever comes: those
directories are polled. Which case applies is decided per directory from statfs(2)'s f_type
against an allow-list of local filesystems; anything unknown is polled (slower, never blind).
`mailbox_watch: poll` (a launch parameter, CODESWARM_MAILBOX_WATCH for a worker) forces polling.

No dependency: a ctypes binding of inotify_init1/inotify_add_watch/statfs from the C library
(the pypi inotify wrappers are unmaintained or pull in asyncio machinery; this is ~80 lines).
Nothing here knows about trio: a caller waits on `fileno()` (select/poll or trio.lowlevel).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the lean worker's start: worker/start.py)
if TYPE_CHECKING:
    from typing import Hashable

WATCH_MODES = ("auto", "poll")

# statfs f_type values (linux/magic.h and the vendors' headers)
LOCAL_FILESYSTEMS = {
    0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs", 0x858458F6: "ramfs",
    0x794C7630: "overlay", 0x2FC12FC1: "zfs", 0xF2F52010: "f2fs", 0x52654973: "reiserfs", 0x3153464A: "jfs",
    0xCA451A4E: "bcachefs", 0x3434: "nilfs", 0x4D44: "vfat", 0x2011BAB0: "exfat",
}
SHARED_FILESYSTEMS = {
    0x6969: "nfs", 0x0BD00BD0: "lustre", 0x47504653: "gpfs", 0x00C36400: "ceph", 0x19830326: "beegfs",
    0x65735546: "fuse", 0xFF534D42: "cifs", 0xFE534D42: "smb2", 0x517B: "smb", 0x5346414F: "afs",
    0x6B414653: "kafs", 0x01021997: "9p", 0xAAD7AAEA: "panfs", 0x01161970: "gfs2", 0x7461636F: "ocfs2",
}

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
FILE_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF
DIR_MASK = IN_CREATE | IN_MOVED_TO
_EVENT = struct.Struct("iIII")
_READ_SIZE = 65536
_MAX_EVENT = _EVENT.size + 256  # NAME_MAX + 1: a read returns whole events only

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def fs_type(directory: str | os.PathLike[str]) -> tuple[int, str]:
    """(f_type, name) of the filesystem holding `directory`; name is 'unknown' if not listed."""
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _c().statfs(os.fsencode(os.fspath(directory)), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fspath(directory))
    magic = ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF  # f_type is the first field
    name = LOCAL_FILESYSTEMS.get(magic) or SHARED_FILESYSTEMS.get(magic) or "unknown"
    return magic, name


class WatchChoice:  # a plain slotted class: see worker/inbox.py
    __slots__ = ("mode", "reason")

    def __init__(self, mode: str, reason: str) -> None:
        self.mode = mode  # "inotify" | "poll"
        self.reason = reason  # for logs and events: why this directory is watched this way

    def __repr__(self) -> str:
        return f"WatchChoice({self.mode!r}, {self.reason!r})"


def choose_mode(directory: str | os.PathLike[str], setting: str = "auto") -> WatchChoice:
    """inotify only where it sees every write: a local filesystem and polling not forced."""
    if setting == "poll":
        return WatchChoice("poll", "mailbox_watch=poll")
    try:
        magic, name = fs_type(directory)
    except OSError as exc:
        return WatchChoice("poll", f"statfs failed ({exc.strerror})")
    if magic in LOCAL_FILESYSTEMS:
        return WatchChoice("inotify", f"local filesystem ({name})")
    if magic in SHARED_FILESYSTEMS:
        return WatchChoice("poll", f"shared filesystem ({name}): inotify misses other hosts' writes")
    return WatchChoice("poll", f"filesystem type {magic:#x} not known to be local")


class Inotify:
    """A non-blocking inotify descriptor."""

    def __init__(self) -> None:
        self.fd = -1
        fd = _c().inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self.fd = fd

    def add_watch(self, path: str, mask: int) -> int:
        wd = _c().inotify_add_watch(self.fd, os.fsencode(path), ctypes.c_uint32(mask))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        _c().inotify_rm_watch(self.fd, wd)  # fails harmlessly if the kernel already dropped it

    def read(self) -> list[tuple[int, int, str]]:
        """Pending events as (wd, mask, name); [] when there are none."""
        out: list[tuple[int, int, str]] = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return out
            pos = 0
            while pos + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
                raw = data[pos + _EVENT.size : pos + _EVENT.size + length]
                out.append((wd, mask, raw.split(b"\0", 1)[0].decode(errors="surrogateescape")))
                pos += _EVENT.size + length
            if len(data) <= _READ_SIZE - _MAX_EVENT:  # the next event would have fit: the queue was empty
                return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # a user has 128 instances (fs.inotify.max_user_instances): never leak one
        self.close()


class _Dir:
    __slots__ = ("wd", "waiting")

    def __init__(self, wd: int) -> None:
        self.wd = wd
        self.waiting: dict[str, set[Hashable]] = {}  # file name -> keys, until the file exists


class AppendWatcher:
    """Which of many files (keys) may have new bytes, from one inotify descriptor.

    A file that exists is watched itself, so its writes wake only its reader. A file that does not
    exist yet is found through a watch on its directory (IN_CREATE/IN_MOVED_TO), held only until it
    appears. `add` returns False when inotify cannot take the file (watch limit): the caller polls it.
    A queue overflow reports every key: readers re-read, nothing is lost.
    """

    def __init__(self) -> None:
        self.ino = Inotify()
        self._paths: dict[Hashable, str] = {}
        self._file_wd: dict[Hashable, int] = {}
        self._by_wd: dict[int, set[Hashable]] = {}
        self._dirs: dict[str, _Dir] = {}
        self._dir_by_wd: dict[int, str] = {}

    def fileno(self) -> int:
        return self.ino.fd

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, key: Hashable, path: str | os.PathLike[str]) -> bool:
        self.discard(key)
        self._paths[key] = os.fspath(path)
        try:
            if not self._arm_file(key):
                self._wait_for_creation(key)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.ENOENT, errno.EACCES, errno.ENOMEM, errno.ENOTDIR):
                raise
            self.discard(key)
            return False
        return True

    def _arm_file(self, key: Hashable) -> bool:
        try:
            wd = self.ino.add_watch(self._paths[key], FILE_MASK)
        except FileNotFoundError:
            return False
        self._file_wd[key] = wd
        self._by_wd.setdefault(wd, set()).add(key)
        return True

    def _wait_for_creation(self, key: Hashable) -> None:
        directory, name = os.path.split(self._paths[key])
        d = self._dirs.get(directory)
        if d is None:
            d = self._dirs[directory] = _Dir(self.ino.add_watch(directory, DIR_MASK))
            self._dir_by_wd[d.wd] = directory
        d.waiting.setdefault(name, set()).add(key)
        if self._arm_file(key):  # created between the two calls: no event would tell
            self._stop_waiting(directory, name, key)

    def _stop_waiting(self, directory: str, name: str, key: Hashable) -> None:
        d = self._dirs.get(directory)
        if d is None:
            return
        keys = d.waiting.get(name)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del d.waiting[name]
        if not d.waiting:
            del self._dirs[directory]
            self._dir_by_wd.pop(d.wd, None)
            self.ino.rm_watch(d.wd)

    def discard(self, key: Hashable) -> None:
        path = self._paths.pop(key, None)
        wd = self._file_wd.pop(key, None)
        if wd is not None:
            keys = self._by_wd.get(wd, set())
            keys.discard(key)
            if not keys:
                self._by_wd.pop(wd, None)
                self.ino.rm_watch(wd)
        if path is not None:
            self._stop_waiting(*os.path.split(path), key)

    def changed(self) -> set[Hashable]:
        """Keys whose file may have grown since the last call (consumes the pending events)."""
        out: set[Hashable] = set()
        for wd, mask, name in self.ino.read():
            if mask & IN_Q_OVERFLOW:
                return set(self._paths)
            directory = self._dir_by_wd.get(wd)
            if directory is not None:
                for key in list(self._dirs[directory].waiting.get(name, ())):
                    if self._arm_file(key):
                        self._stop_waiting(directory, name, key)
                    out.add(key)
                continue
            keys = self._by_wd.get(wd)
            if not keys:
                continue
            out |= keys
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):  # gone or replaced: follow the name
                self._by_wd.pop(wd, None)
                for key in list(keys):
                    self._file_wd.pop(key, None)
                    if key in self._paths and not self._arm_file(key):
                        self._wait_for_creation(key)
        return out

    def close(self) -> None:
        self.ino.close()


class PollBackoff:
    """The polling cadence where inotify is blind: fast after data, backing off to `idle_cap`.

    idle_cap bounds the pickup delay after any idle time: 0.2 s keeps the first prompt after a long
    idle under 250 ms while an idle node costs 5 cheap reads a second (open+fstat, which NFS's
    close-to-open consistency revalidates; a bare stat may be served from the attribute cache)."""

    def __init__(self, fast: float = 0.01, growth: float = 1.5, idle_cap: float = 0.2) -> None:
        self.fast = fast
        self.growth = growth
        self.idle_cap = idle_cap
        self.delay = fast

    def saw_data(self) -> None:
        self.delay = self.fast

    def saw_nothing(self) -> None:
        self.delay = min(self.idle_cap, self.delay * self.growth)


def describe(choice: WatchChoice, directory: Path) -> str:
    return f"{directory}: {choice.mode} ({choice.reason})"
