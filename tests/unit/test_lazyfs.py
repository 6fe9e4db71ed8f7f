"""The power-loss test's file system (tests/powerloss/lazyfs.py): what was written but not synced is read back until
the power goes, and lost then; what was synced, by fsync or through a file opened with O_SYNC or O_DSYNC, stays."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.powerloss.lazyfs import PAGE, LazyMount, fuse_missing

pytestmark = pytest.mark.skipif(fuse_missing() is not None, reason=fuse_missing() or "")


@pytest.fixture
def disk(tmp_path) -> Iterator[LazyMount]:
    with LazyMount(tmp_path / "disk", tmp_path / "mnt", tmp_path / "lazyfs.log") as mount:
        yield mount


def power_cycle(disk: LazyMount) -> None:
    disk.power_off()
    disk.mount()


def write(path: Path, data: bytes, flags: int = 0, offset: int = 0, sync: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    try:
        os.pwrite(fd, data, offset)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def test_unsynced_data_is_read_back_but_lost_when_the_power_goes(disk):
    path = disk.mountpoint / "file"
    write(path, b"not synced")
    assert path.read_bytes() == b"not synced"
    assert (disk.backing / "file").read_bytes() == b""  # only the create reached the disk
    power_cycle(disk)
    assert path.exists() and path.read_bytes() == b""


@pytest.mark.parametrize("sync", ["fsync", "fdatasync"])
def test_synced_data_survives_and_what_came_after_the_sync_does_not(disk, sync):
    path = disk.mountpoint / "file"
    with open(path, "wb") as file:
        file.write(b"a" * (PAGE + 10))
        file.flush()
        getattr(os, sync)(file.fileno())
        file.write(b"b" * 10)  # past the synced end
        file.seek(5)
        file.write(b"c" * 5)  # over synced data
    assert path.read_bytes() == b"a" * 5 + b"c" * 5 + b"a" * PAGE + b"b" * 10
    power_cycle(disk)
    assert path.read_bytes() == b"a" * (PAGE + 10)


@pytest.mark.parametrize("flag", ["O_SYNC", "O_DSYNC"])
def test_a_write_through_a_file_opened_to_sync_survives(disk, flag):
    path = disk.mountpoint / "meta.inf"
    write(path, b"synced on write", getattr(os, flag))
    power_cycle(disk)
    assert path.read_bytes() == b"synced on write"


def test_unsynced_data_follows_its_file_through_a_rename(disk):
    old, new = disk.mountpoint / "index.tmp", disk.mountpoint / "index.db"
    write(old, b"synced", sync=True)
    write(old, b"SYNCED, then more", offset=0)
    old.rename(new)  # metadata: on the disk at once
    assert new.read_bytes() == b"SYNCED, then more"
    fd = os.open(new, os.O_RDONLY)
    os.fsync(fd)  # a sync through any handle syncs the file
    os.close(fd)
    write(new, b" and lost", offset=len(b"SYNCED, then more"))
    power_cycle(disk)
    assert not old.exists() and new.read_bytes() == b"SYNCED, then more"


def test_a_truncate_reaches_the_disk_at_once_and_cuts_the_unsynced_data_too(disk):
    path = disk.mountpoint / "block"
    write(path, b"x" * (3 * PAGE), sync=True)
    write(path, b"y" * (3 * PAGE))
    os.truncate(path, PAGE + 1)
    assert path.read_bytes() == b"y" * (PAGE + 1)
    assert (disk.backing / "block").stat().st_size == PAGE + 1
    power_cycle(disk)
    assert path.read_bytes() == b"x" * (PAGE + 1)


def test_a_deleted_files_unsynced_data_is_gone_with_it(disk):
    path = disk.mountpoint / "file"
    write(path, b"doomed")
    path.unlink()
    write(path, b"", sync=True)  # a new file by the same name (perhaps on the same inode) starts empty
    assert path.read_bytes() == b""
    assert sorted(os.listdir(disk.mountpoint)) == ["file"]
