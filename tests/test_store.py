"""Saving and reading operations through the history service: file names,
atomic writes, ids, what is served."""

import json
import os
import stat
import time

import pytest

from generation_studio.history import HistoryService, records
from generation_studio import liveness
from generation_studio.history import recovery
from generation_studio.history.filters import Filters
from generation_studio.storage import folder as folder_module
from generation_studio.storage import layout
from generation_studio.storage.folder import OperationExists

from .conftest import TEXT_TO_IMAGE as OP
from .conftest import png_bytes, stored_names


@pytest.fixture
def store(tmp_path):
    s = HistoryService(tmp_path / "ops", tmp_path / "ops" / ".index" / "history.sqlite3")
    s.start(wait=True)
    return s


def every_file(root):
    """Every file under the storage folder but the index and lock files."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and p.parent.name not in (".index", ".locks"))


def test_save_writes_record_inputs_and_output_named_by_content(store):
    record = store.save({"operationType": "img_to_img", "status": "succeeded"},
                        inputs=[(png_bytes(), "cat.jpg"), (png_bytes(fmt="JPEG"), None)],
                        outputs=[png_bytes(fmt="WEBP")])
    op_id = record["operationId"]
    names = stored_names(store.root)
    assert names == sorted([f"{op_id}.json", f"{op_id}_in_0.png", f"{op_id}_in_1.jpg",
                            f"{op_id}_out.webp"])
    on_disk = json.loads((store.root / f"{op_id}.json").read_text())
    assert on_disk == record
    first = on_disk["inputImages"][0]
    assert first["originalName"] == "cat.jpg"
    assert first["contentType"] == "image/png"
    assert (first["width"], first["height"]) == (64, 48)
    assert first["bytes"] == len(png_bytes())
    assert len(first["sha256"]) == 64
    assert on_disk["resultFile"] == f"{op_id}_out.webp"
    assert on_disk["schemaVersion"] == records.SCHEMA_VERSION


def noise_png(size) -> bytes:
    """A PNG that does not compress: ``size`` pixels of random colours."""
    import io

    from PIL import Image
    out = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(out, "PNG")
    return out.getvalue()


def test_each_file_s_entry_describes_its_bytes_on_disk_small_or_large(store):
    """Large files are hashed on a helper thread while they are written: the
    entry must still be theirs, in their order."""
    import hashlib
    files = [noise_png((200, 150)), png_bytes((5, 4)), noise_png((200, 120)), png_bytes((7, 3))]
    assert [len(f) >= 64 * 1024 for f in files] == [True, False, True, False]
    record = store.save(OP, inputs=[(f, None) for f in files[:2]], outputs=files[2:])
    entries = record["inputImages"] + record["outputs"]
    on_disk = [(store.root / e["file"]).read_bytes() for e in entries]
    assert on_disk == files
    assert [(e["sha256"], e["bytes"], e["width"], e["height"]) for e in entries] == [
        (hashlib.sha256(f).hexdigest(), len(f), w, h)
        for f, (w, h) in zip(files, [(200, 150), (5, 4), (200, 120), (7, 3)])]


def test_a_forked_process_saves_large_files_too(store):
    """gunicorn and the index's readers fork: the helper thread of the parent
    is not in the child, which must make its own and not wait forever."""
    store.save(OP, outputs=[noise_png((200, 150))])  # the parent's helper thread exists
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        try:
            store.save({**OP, "prompt": "from the child"}, outputs=[noise_png((200, 150))])
        finally:
            os._exit(0)
    for _ in range(200):
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        os.waitpid(child, 0)
        pytest.fail("the child process hung saving a large file")
    prompts = [json.loads(p.read_text()).get("prompt") for p in store.root.glob("*.json")]
    assert sorted(prompts, key=str) == [None, "from the child"]


def test_a_save_while_the_interpreter_exits_still_describes_large_files(store, monkeypatch):
    """At exit no thread takes new work (a worker may still be saving then)."""
    import concurrent.futures.thread
    store.save(OP, outputs=[noise_png((200, 150))])  # the helper threads exist
    monkeypatch.setattr(concurrent.futures.thread, "_shutdown", True)
    data = noise_png((200, 150))
    record = store.save(OP, outputs=[data])
    assert (store.root / record["resultFile"]).read_bytes() == data
    assert (record["outputs"][0]["width"], record["outputs"][0]["bytes"]) == (200, len(data))


def test_several_outputs_are_numbered(store):
    record = store.save(OP, outputs=[png_bytes(), png_bytes(fmt="JPEG")])
    op_id = record["operationId"]
    assert [o["file"] for o in record["outputs"]] == [f"{op_id}_out_0.png", f"{op_id}_out_1.jpg"]


def test_files_are_readable_by_others(store):
    record = store.save(OP, outputs=[png_bytes()])
    for path in (store.root / n for n in stored_names(store.root)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert record["resultFile"]


def test_a_failed_write_leaves_no_json_and_no_files(store, monkeypatch):
    real_replace = os.replace

    def fail_on_json(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_json)
    with pytest.raises(OSError, match="disk full"):
        store.save(OP, inputs=[(png_bytes(), "a.png")], outputs=[png_bytes()])
    assert every_file(store.root) == []


def test_a_write_that_dies_midway_leaves_no_half_file(store, monkeypatch):
    def broken_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        store.save(OP, outputs=[png_bytes()])
    assert every_file(store.root) == []


def test_a_save_whose_folder_fsync_fails_leaves_no_files_and_no_index_row(store, monkeypatch):
    """The index row is written while the folder's fsync runs: when that
    fsync fails, the operation's files go, and its row too."""
    kept = store.save({**OP, "prompt": "kept"}, outputs=[png_bytes()])["operationId"]
    names_before = every_file(store.root)

    def broken_fsync_dir(folder):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(folder_module, "fsync_dir", broken_fsync_dir)
    with pytest.raises(OSError, match="Input/output error"):
        store.save({**OP, "prompt": "lost"}, inputs=[(png_bytes(), "a.png")], outputs=[png_bytes()])
    assert every_file(store.root) == names_before
    assert store.count(Filters()) == 1
    assert [r["operationId"] for r in store.page(Filters(), 10).operations] == [kept]
    assert store.count(Filters(q="lost")) == 0


def fails_fsync_of(monkeypatch, part: str) -> None:
    """Make the fsync of a file whose name contains ``part`` fail, whichever thread runs it."""
    real_fsync = os.fsync

    def fsync(fd):
        if part in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_save_whose_result_cannot_be_fsynced_leaves_nothing(store, monkeypatch):
    kept = store.save({**OP, "prompt": "kept"}, outputs=[png_bytes()])["operationId"]
    names_before = every_file(store.root)
    fails_fsync_of(monkeypatch, "_out.png")
    with pytest.raises(OSError, match="Input/output error"):
        store.save({**OP, "prompt": "lost"}, inputs=[(png_bytes(), "a.png")],
                   outputs=[png_bytes()])  # fsynced on a helper thread
    assert every_file(store.root) == names_before
    assert [r["operationId"] for r in store.page(Filters(), 10).operations] == [kept]


def test_an_update_whose_new_result_cannot_be_fsynced_keeps_the_record_as_it_was(
        store, monkeypatch):
    op = store.save({**OP, "status": "running"}, inputs=[(png_bytes(), "a.png")])
    names_before = every_file(store.root)
    fails_fsync_of(monkeypatch, "_out.png")
    with pytest.raises(OSError, match="Input/output error"):
        store.update(op["operationId"], lambda r: {"status": "succeeded"},
                     outputs=[png_bytes()])
    assert every_file(store.root) == names_before
    assert json.loads((store.root / f"{op['operationId']}.json").read_bytes()) == op
    assert [r["status"] for r in store.page(Filters(), 10).operations] == ["running"]


def test_an_update_whose_record_cannot_be_replaced_removes_its_new_result(store, monkeypatch):
    op = store.save({**OP, "status": "running"})
    names_before, real_replace = every_file(store.root), os.replace

    def replace(src, dst):
        if str(dst).endswith(".json"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        store.update(op["operationId"], lambda r: {"status": "succeeded"}, outputs=[png_bytes()])
    assert every_file(store.root) == names_before
    assert json.loads((store.root / f"{op['operationId']}.json").read_bytes()) == op


def test_an_update_whose_folder_fsync_fails_keeps_the_new_record_with_its_result(
        store, monkeypatch):
    """The record is replaced already: its new result stays with it."""
    op_id = store.save({**OP, "status": "running"})["operationId"]

    def broken_fsync_dir(folder):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(folder_module, "fsync_dir", broken_fsync_dir)
    with pytest.raises(OSError, match="Input/output error"):
        store.update(op_id, lambda r: {"status": "succeeded"}, outputs=[png_bytes()])
    on_disk = json.loads((store.root / f"{op_id}.json").read_bytes())
    assert (on_disk["status"], on_disk["resultFile"]) == ("succeeded", f"{op_id}_out.png")
    assert (store.root / f"{op_id}_out.png").read_bytes() == png_bytes()
    assert [r["status"] for r in store.page(Filters(), 10).operations] == ["succeeded"]


def test_a_durable_update_fsyncs_the_folder_and_a_lease_does_not(store, monkeypatch):
    """A lease may be lost in a power cut (the job is queued again); an outcome may not."""
    op_id = store.save({**OP, "status": "queued"})["operationId"]
    synced = []
    monkeypatch.setattr(folder_module, "fsync_dir", synced.append)
    store.update(op_id, lambda r: {"status": "running"}, durable=False)
    assert synced == []
    store.update(op_id, lambda r: {"status": "failed"})
    assert synced == [store.root]


def test_the_index_row_comes_after_the_record_and_its_files(store, monkeypatch):
    """A reader that finds the row finds the record (and the record its files)."""
    seen = []
    real_add = store.keeper.add

    def add(records_):
        seen.extend(sorted(stored_names(store.root)))
        real_add(records_)

    monkeypatch.setattr(store.keeper, "add", add)
    op_id = store.save(OP, inputs=[(png_bytes(), "a.png")], outputs=[png_bytes()])["operationId"]
    assert seen == [f"{op_id}.json", f"{op_id}_in_0.png", f"{op_id}_out.png"]


def test_ids_never_collide_with_an_existing_operation(store, monkeypatch):
    ids = iter(["20261124_aaaaaaaaaaaa", "20261124_aaaaaaaaaaaa", "20261124_bbbbbbbbbbbb"])
    monkeypatch.setattr(layout, "new_id", lambda when=None: next(ids))
    first = store.save(OP)["operationId"]
    second = store.save(OP)["operationId"]
    assert (first, second) == ("20261124_aaaaaaaaaaaa", "20261124_bbbbbbbbbbbb")
    with pytest.raises(OperationExists, match=f"^{first}$"):
        store.save({**OP, "operationId": first})
    assert json.loads((store.root / f"{first}.json").read_text())["operationId"] == first


def test_temp_files_of_dead_writers_go_at_once_others_after_the_grace(store):
    dead = store.root / ".x_out.jpg.pid999999999-abc.tmp"  # no such process
    mine = store.root / f".y_out.jpg.pid{os.getpid()}-def.tmp"  # a write in progress
    mine_old = store.root / f".z_out.jpg.pid{os.getpid()}-ghi.tmp"
    unknown = store.root / ".w_out.jpg.jkl.tmp"
    for path in (dead, mine, mine_old, unknown):
        path.write_bytes(b"half")
    old = time.time() - recovery.TEMP_GRACE_SECONDS - 5
    os.utime(mine_old, (old, old))
    assert recovery.remove_temp_files(store) == 2
    assert [p.exists() for p in (dead, mine, mine_old, unknown)] == [False, True, False, True]


def test_open_file_only_serves_the_operations_own_files(store):
    a = store.save(OP, outputs=[png_bytes()])
    b = store.save(OP, outputs=[png_bytes()])
    path, entry = store.open_file(a["operationId"], a["resultFile"])
    assert path.read_bytes() == png_bytes() and entry["contentType"] == "image/png"
    assert store.open_file(a["operationId"], b["resultFile"]) is None
    assert store.open_file(a["operationId"], f"{a['operationId']}.json") is None
    assert store.open_file("../etc", "passwd") is None


def test_a_corrupt_record_is_skipped_not_fatal(store, caplog):
    good = store.save(OP)["operationId"]
    bad = store.save(OP)["operationId"]
    (store.root / f"{bad}.json").write_text('{"operationId": "trunc')
    assert set(store.get_many([good, bad])) == {good}
    assert f"Skipped {bad}.json" in caplog.text


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
                                          ("WEBP", {}), ("GIF", {})])
def test_recorded_sizes_are_the_images_own(store, fmt, options):
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.new("RGB", (1234, 567), (9, 90, 200)).save(buffer, fmt, **options)
    [entry] = store.save(OP, outputs=[buffer.getvalue()])["outputs"]
    assert (entry["width"], entry["height"]) == (1234, 567)


def test_a_temp_file_older_than_the_process_now_holding_its_pid_is_a_dead_writers(store):
    started = liveness.start_time(os.getpid())
    if started is None:
        pytest.skip("no /proc to tell when a process started")
    reused = store.root / f".x_out.jpg.pid{os.getpid()}-abc.tmp"  # this pid, an older writer
    reused.write_bytes(b"half")
    os.utime(reused, (started - 60, started - 60))
    assert recovery.remove_temp_files(store) == 1 and not reused.exists()


def test_a_killed_writer_not_yet_reaped_is_dead(store):
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while liveness.start_time(child.pid) is not None and time.time() < deadline:
        if open(f"/proc/{child.pid}/stat", "rb").read().rsplit(b")", 1)[1].split()[0] == b"Z":
            break  # exited, not reaped: a zombie
        time.sleep(0.01)
    temp = store.root / f".x_out.jpg.pid{child.pid}-abc.tmp"
    temp.write_bytes(b"half")
    assert liveness.alive(child.pid) is False
    assert recovery.remove_temp_files(store) == 1 and not temp.exists()
    child.wait()
