"""The one way the studio writes a file: whole or not at all, readable by all."""

import os
import stat

import pytest

from generation_studio.storage import atomic
from generation_studio.storage.atomic import atomic_file, write_atomic


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
