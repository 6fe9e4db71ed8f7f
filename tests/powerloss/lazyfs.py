"""A FUSE pass-through that loses what was not synced when the power goes, in the manner of Jepsen's LazyFS.

It mirrors a backing directory. File data written but not yet synced stays in the file system's own memory, a page
cache of 4 KiB pages; reads see it, and it reaches the backing file only when synced, by fsync or fdatasync. A write
through a file opened with O_SYNC or O_DSYNC is synced too: the kernel follows each with an fsync of the file
(nats-server with `sync_interval: always` uses both, seen with strace: pwrite + fsync on its message blocks, O_SYNC
for its meta files). A sync writes back all of the file's unsynced pages, whichever handle wrote them. Metadata
(create, mkdir, rename, unlink, truncate, chmod) is applied to the backing directory at once, as LazyFS does by
default, so after a power cut a file may exist with less data than was written to it, never more.

The backing directory stands for the disk: what reaches it survives, so a sync needs no fsync of its own. The file
system runs in a process of its own (`LazyMount`), whose memory is the page cache: "power off" kills that process with
SIGKILL, which drops every unsynced write, and unmounts; `mount` again serves what the disk holds.

    python tests/powerloss/lazyfs.py BACKING_DIR MOUNTPOINT   # serves until unmounted (what LazyMount runs)
"""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PAGE = 4096
# The backing file is opened read-write whatever the mode (a page is read before it is written), and never to append
# (a write comes with its offset) nor to sync (the kernel asks for the syncs).
NOT_FOR_THE_BACKING_FILE = os.O_ACCMODE | os.O_SYNC | os.O_DSYNC | os.O_APPEND
MOUNT_TIMEOUT_S = 10.0
STAT_FIELDS = (
    "st_mode",
    "st_ino",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_size",
    "st_atime_ns",
    "st_mtime_ns",
    "st_ctime_ns",
    "st_blocks",
    "st_blksize",
)
STATVFS_FIELDS = (
    "f_bavail",
    "f_bfree",
    "f_blocks",
    "f_bsize",
    "f_favail",
    "f_ffree",
    "f_files",
    "f_frsize",
    "f_namemax",
)


@dataclass
class CachedFile:
    """One file's unsynced data: its size as readers see it, and the pages written since its last sync."""

    size: int
    dirty: dict[int, bytearray] = field(default_factory=dict)  # page number -> the whole page as written

    def truncate(self, length: int) -> None:
        self.size = length
        for number in [number for number in self.dirty if number * PAGE >= length]:
            del self.dirty[number]
        if (tail := length % PAGE) and (page := self.dirty.get(length // PAGE)) is not None:
            page[tail:] = bytes(PAGE - tail)


class LazyFS:
    """The operations mfusepy calls (those left out answer ENOSYS), on paths inside the mount; a file handle is the
    backing file's descriptor. Single-threaded (mounted with nothreads): no locks. The cache is keyed by the backing
    file's inode, so a file's unsynced data follows it through a rename."""

    use_ns = True  # times in nanoseconds (mfusepy)

    def __init__(self, backing: Path) -> None:
        self.backing = str(backing)
        self.cache: dict[int, CachedFile] = {}
        self.handles: dict[int, int] = {}  # open handle (the backing file's descriptor) -> the file's inode

    def _path(self, path: str) -> str:
        return os.path.join(self.backing, path.lstrip("/"))

    def _cached(self, fd: int) -> CachedFile:
        inode = self.handles[fd]
        if inode not in self.cache:
            self.cache[inode] = CachedFile(size=os.fstat(fd).st_size)
        return self.cache[inode]

    def _write_back(self, fd: int) -> None:
        """Write the file's dirty pages to the backing file: they are synced."""
        inode = self.handles[fd]
        if (cached := self.cache.get(inode)) is None:
            return
        for number in sorted(cached.dirty):
            page, start = cached.dirty.pop(number), number * PAGE
            os.pwrite(fd, page[: min(PAGE, cached.size - start)], start)
        if not cached.dirty:  # the backing file holds it all now, its size too
            del self.cache[inode]

    def _forget_if_gone(self, inode: int, links: int) -> None:
        """A file without a name that nobody has open is gone: its inode may be reused, its unsynced data must not."""
        if links == 0 and inode not in self.handles.values():
            self.cache.pop(inode, None)

    # data: through the cache

    def open(self, path: str, flags: int) -> int:
        return self._opened(os.open(self._path(path), (flags & ~NOT_FOR_THE_BACKING_FILE) | os.O_RDWR), flags)

    def create(self, path: str, mode: int, flags: int) -> int:
        backing_flags = (flags & ~NOT_FOR_THE_BACKING_FILE) | os.O_RDWR | os.O_CREAT
        return self._opened(os.open(self._path(path), backing_flags, mode), flags)

    def _opened(self, fd: int, flags: int) -> int:
        self.handles[fd] = inode = os.fstat(fd).st_ino
        if flags & os.O_TRUNC and inode in self.cache:  # the open truncated the backing file: metadata, at once
            self.cache[inode].truncate(0)
        return fd

    def read(self, path: str, size: int, offset: int, fd: int) -> bytes:
        if (cached := self.cache.get(self.handles[fd])) is None:
            return os.pread(fd, size, offset)
        end = min(offset + size, cached.size)
        if end <= offset:
            return b""
        data = bytearray(os.pread(fd, end - offset, offset).ljust(end - offset, b"\0"))
        for number in range(offset // PAGE, (end - 1) // PAGE + 1):
            if (page := cached.dirty.get(number)) is not None:
                start = number * PAGE
                low, high = max(start, offset), min(start + PAGE, end)
                data[low - offset : high - offset] = page[low - start : high - start]
        return bytes(data)

    def write(self, path: str, data: bytes, offset: int, fd: int) -> int:
        if not data:
            return 0
        cached = self._cached(fd)
        for number in range(offset // PAGE, (offset + len(data) - 1) // PAGE + 1):
            start = number * PAGE
            if (page := cached.dirty.get(number)) is None:  # first written since the last sync: as the disk has it
                page = cached.dirty[number] = bytearray(os.pread(fd, PAGE, start).ljust(PAGE, b"\0"))
            low, high = max(start, offset), min(start + PAGE, offset + len(data))
            page[low - start : high - start] = data[low - offset : high - offset]
        cached.size = max(cached.size, offset + len(data))
        return len(data)

    def fsync(self, path: str, datasync: int, fd: int) -> int:
        self._write_back(fd)
        return 0

    def flush(self, path: str, fd: int) -> int:
        return 0  # a close is no sync

    def release(self, path: str, fd: int) -> int:
        inode, links = self.handles.pop(fd), os.fstat(fd).st_nlink
        os.close(fd)
        self._forget_if_gone(inode, links)
        return 0

    def truncate(self, path: str, length: int, fd: int | None = None) -> int:
        os.truncate(fd if fd is not None else self._path(path), length)  # metadata: at once
        inode = os.fstat(fd).st_ino if fd is not None else os.lstat(self._path(path)).st_ino
        if inode in self.cache:
            self.cache[inode].truncate(length)
        return 0

    # metadata: straight to the backing directory

    def getattr(self, path: str, fd: int | None = None) -> dict:
        stat = os.fstat(fd) if fd is not None else os.lstat(self._path(path))
        attributes = {name.removesuffix("_ns"): getattr(stat, name) for name in STAT_FIELDS}
        if (cached := self.cache.get(stat.st_ino)) is not None:
            attributes["st_size"] = cached.size
        return attributes

    def readdir(self, path: str, fd: int) -> list[str]:
        return [".", "..", *os.listdir(self._path(path))]

    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._path(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        os.rmdir(self._path(path))
        return 0

    def unlink(self, path: str) -> int:
        stat = os.lstat(self._path(path))
        os.unlink(self._path(path))
        self._forget_if_gone(stat.st_ino, stat.st_nlink - 1)
        return 0

    def rename(self, old: str, new: str) -> int:
        try:
            replaced = os.lstat(self._path(new))
        except FileNotFoundError:
            replaced = None
        os.rename(self._path(old), self._path(new))
        if replaced is not None:
            self._forget_if_gone(replaced.st_ino, replaced.st_nlink - 1)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._path(path), mode)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:  # now (os.utime refuses ns=None)
            os.utime(self._path(path))
        else:
            os.utime(self._path(path), ns=times)
        return 0

    def statfs(self, path: str) -> dict:
        stat = os.statvfs(self._path(path))
        return {name: getattr(stat, name) for name in STATVFS_FIELDS}

    def fsyncdir(self, path: str, datasync: int, fd: int) -> int:
        return 0  # metadata is on the disk already


def fuse_missing() -> str | None:
    """Why FUSE cannot work on this machine (no /dev/fuse: a container started without it), or None."""
    return None if os.path.exists("/dev/fuse") else "no /dev/fuse: FUSE cannot work here (a container without it)"


class LazyMount:
    """The file system as a test drives it: mounted over `backing` at `mountpoint`, served by a child process."""

    def __init__(self, backing: Path, mountpoint: Path, log_file: Path | None = None) -> None:
        self.backing, self.mountpoint, self.log_file = Path(backing), Path(mountpoint), log_file
        self.process: subprocess.Popen | None = None

    def mount(self) -> "LazyMount":
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        output = open(self.log_file, "ab") if self.log_file else None
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(self.backing), str(self.mountpoint)],
            stdout=output or subprocess.DEVNULL,
            stderr=output or subprocess.DEVNULL,
        )
        if output:
            output.close()
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not os.path.ismount(self.mountpoint):  # a condition, polled: the mount is another process's doing
            if self.process.poll() is not None:
                raise RuntimeError(f"lazyfs exited with {self.process.returncode} (log: {self.log_file})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"lazyfs did not mount {self.mountpoint} within {MOUNT_TIMEOUT_S}s")
            time.sleep(0.01)
        return self

    def power_off(self) -> None:
        """Every write not synced is lost: the process holding them is killed, then the mount goes. Kill what uses the
        mount first, as a power cut would stop it too."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None
        self.unmount()

    def unmount(self) -> None:
        """Unmount if mounted (lazily: whatever still holds a file there cannot keep the mount)."""
        if self.is_mounted:
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=True, capture_output=True)

    @property
    def is_mounted(self) -> bool:
        """In the mount table (a mount whose process died is still there, though it answers nothing)."""
        target = str(self.mountpoint.resolve())
        with open("/proc/self/mounts") as mounts:
            return any(line.split()[1] == target for line in mounts)

    def __enter__(self) -> "LazyMount":
        return self.mount()

    def __exit__(self, *exc_info) -> None:
        self.power_off()


def main() -> None:
    import mfusepy  # loads libfuse3: in the file system's process only, so tests can skip where FUSE cannot work

    backing, mountpoint = sys.argv[1:3]
    mfusepy.FUSE(LazyFS(Path(backing)), mountpoint, foreground=True, nothreads=True, fsname="lazyfs")


if __name__ == "__main__":
    main()
