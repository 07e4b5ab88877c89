"""The one way the studio writes a file: whole or not at all, readable by all."""

import errno
import os
import stat
import threading
import time

import pytest

from generation_studio.storage import atomic
from generation_studio.storage.atomic import AtomicFiles, atomic_file, write_atomic


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_atomic_writes_the_bytes_readable_by_all_whatever_the_umask(tmp_path):
    data = os.urandom(300_000)  # more than one write call may take
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "a.bin", data)
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert names(tmp_path) == ["a.bin"]


def test_the_temp_file_beside_it_names_its_writer(tmp_path):
    with atomic_file(tmp_path / "r.json", "w", encoding="utf-8") as f:
        f.write("{}")
        (temp,) = [n for n in names(tmp_path)]
        assert temp.startswith(f".r.json.pid{os.getpid()}-")
        assert temp.endswith(atomic.TMP_SUFFIX)
        assert not (tmp_path / "r.json").exists()
    assert names(tmp_path) == ["r.json"]


def test_a_text_file_keeps_its_encoding_and_newlines(tmp_path):
    with atomic_file(tmp_path / "e.csv", "w", encoding="latin-1", newline="\r\n") as f:
        f.write("prompt\nchâteau\n")
    assert (tmp_path / "e.csv").read_bytes() == b"prompt\r\nch\xe2teau\r\n"


def test_a_block_that_raises_keeps_the_old_file_and_no_temp(tmp_path):
    (tmp_path / "r.json").write_text("old")
    with pytest.raises(RuntimeError, match="midway"):
        with atomic_file(tmp_path / "r.json", "w") as f:
            f.write("new, half")
            raise RuntimeError("midway")
    assert (tmp_path / "r.json").read_text() == "old"
    assert names(tmp_path) == ["r.json"]


def test_a_failed_fsync_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    (tmp_path / "a.bin").write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_atomic(tmp_path / "a.bin", b"new")
    assert (tmp_path / "a.bin").read_bytes() == b"old"
    assert names(tmp_path) == ["a.bin"]


def test_a_taken_temp_name_is_skipped_never_overwritten(tmp_path, monkeypatch):
    tokens = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(tokens))
    write_atomic(tmp_path / "a.bin", b"first", sync_dir=False)  # leaves no temp: the name is free
    taken = tmp_path / f".b.bin.pid{os.getpid()}-aaaaaaaa.tmp"
    taken.write_bytes(b"another writer's")
    write_atomic(tmp_path / "b.bin", b"second")
    assert taken.read_bytes() == b"another writer's"
    assert (tmp_path / "b.bin").read_bytes() == b"second"



def fd_name(fd):
    return os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))


def test_files_written_together_take_their_names_in_order_once_all_are_fsynced(
        tmp_path, monkeypatch):
    """No file has its name before every one is durable, and the last added
    (an operation's record) is renamed last."""
    fsynced, renamed, real_fsync, real_replace = [], [], os.fsync, os.replace

    def fsync(fd):
        name = fd_name(fd).split(".pid")[0]
        if name == ".a_in.png":
            time.sleep(0.05)  # a slow disk: the others must wait for it
        fsynced.append((name, [n for n in names(tmp_path) if not n.startswith(".")]))
        real_fsync(fd)

    def replace(src, dst):
        renamed.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files = AtomicFiles()
    data = {"a_in.png": os.urandom(100_000), "a_out.jpg": os.urandom(200_000), "a.json": b"{}"}
    for name, content in data.items():
        files.write(tmp_path / name, content, last=name == "a.json")
    files.commit()
    assert sorted(fsynced) == [(".a.json", []), (".a_in.png", []), (".a_out.jpg", [])]
    assert renamed == ["a_in.png", "a_out.jpg", "a.json"]
    assert files.renamed == [tmp_path / n for n in renamed]
    assert {n: (tmp_path / n).read_bytes() for n in names(tmp_path)} == data
    assert stat.S_IMODE((tmp_path / "a_out.jpg").stat().st_mode) == 0o644


def test_a_file_is_fsynced_while_the_next_one_is_written(tmp_path, monkeypatch):
    """The first file's fsync waits until the second file is being written:
    were they done one after the other, it would wait in vain."""
    second_written, real_fsync, real_write = threading.Event(), os.fsync, os.write
    overlapped = []

    def fsync(fd):
        if fd_name(fd).startswith(".first"):
            overlapped.append(second_written.wait(timeout=5))
        real_fsync(fd)

    def write(fd, data):
        if fd_name(fd).startswith(".second"):
            second_written.set()
        return real_write(fd, data)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "write", write)
    files = AtomicFiles()
    files.write(tmp_path / "first", b"1")
    files.write(tmp_path / "second", b"2", last=True)
    files.commit()
    assert overlapped == [True]
    assert names(tmp_path) == ["first", "second"]


def test_a_failed_fsync_leaves_no_file_and_no_temp_and_a_moved_file_where_it_was(
        tmp_path, monkeypatch):
    download = tmp_path / ".download.tmp"
    download.write_bytes(b"result")
    real_fsync = os.fsync

    def fsync(fd):
        if fd_name(fd).startswith(".b"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files = AtomicFiles()
    files.write(tmp_path / "a", b"a")
    files.move(download, tmp_path / "out")
    files.write(tmp_path / "b", b"b")
    files.write(tmp_path / "c", b"c", last=True)
    with pytest.raises(OSError, match="Input/output error"):
        files.commit()
    files.discard()
    assert names(tmp_path) == [".download.tmp"]
    assert files.renamed == []


def test_the_rename_is_made_durable_by_an_fsync_of_the_folder(tmp_path, monkeypatch):
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(tmp_path / "a.bin", b"a")
    assert synced == [False, True]  # the file, then its folder
    synced.clear()
    write_atomic(tmp_path / "b.bin", b"b", sync_dir=False)  # the caller fsyncs it once for all
    assert synced == [False]


def test_a_symbolic_link_is_never_taken_for_a_finished_file(tmp_path):
    (tmp_path / "elsewhere").write_bytes(b"not ours")
    (tmp_path / ".download.tmp").symlink_to(tmp_path / "elsewhere")
    files = AtomicFiles()
    files.move(tmp_path / ".download.tmp", tmp_path / "out")
    with pytest.raises(OSError) as raised:
        files.commit()
    assert raised.value.errno == errno.ELOOP
    files.discard()
    assert names(tmp_path) == [".download.tmp", "elsewhere"]


def test_discarding_a_temp_file_that_is_gone_already_is_no_error(tmp_path):
    files = AtomicFiles()
    files.write(tmp_path / "a", b"a")
    for name in names(tmp_path):
        os.unlink(tmp_path / name)
    files.discard()
    assert names(tmp_path) == []


def test_a_temp_file_whose_mode_cannot_be_set_is_removed(tmp_path, monkeypatch):
    def fchmod(fd, mode):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", fchmod)
    with pytest.raises(PermissionError, match="Operation not permitted"):
        write_atomic(tmp_path / "a.bin", b"a")
    assert names(tmp_path) == []


def test_when_every_temp_name_is_taken_the_error_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: "aaaaaaaa")
    (tmp_path / f".a.bin.pid{os.getpid()}-aaaaaaaa.tmp").write_bytes(b"another writer's")
    with pytest.raises(FileExistsError) as raised:
        write_atomic(tmp_path / "a.bin", b"a")
    assert (raised.value.errno, raised.value.strerror, raised.value.filename) == (
        errno.EEXIST, "No free temporary name", str(tmp_path / "a.bin"))


def test_a_file_that_cannot_be_written_whole_leaves_no_temp(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    files = AtomicFiles()
    files.write(tmp_path / "a", b"a")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space left on device"):
        files.write(tmp_path / "b", b"b")
    files.discard()
    assert names(tmp_path) == []
