"""The automatic backup: every operation that ends goes to the bucket in the
background (files, then record), survives a store outage and a restart, and
shows its state in /api/health, the admin page and `flask backup status`."""

import io
import json
import os
import time

from generation_studio import create_app

from .backup_support import PREFIX, generate, local_files, objects, sha, wait_for
from .conftest import png_bytes

pytest_plugins = ["tests.backup_fixtures"]  # the s3, bucket and make_app fixtures


def _backed_up(s3, bucket, storage_dir, op_ids):
    """True once every file of ``op_ids`` on disk is in the bucket, same bytes and sha256."""
    local, remote = local_files(storage_dir), objects(s3, bucket)
    for name, data in local.items():
        if any(name.startswith(i) for i in op_ids):
            if name not in remote or remote[name] != (data, sha(data)):
                return False
    return True


def test_every_ended_operation_is_in_the_bucket_with_its_sha256(make_app, s3, bucket, tmp_path):
    app = make_app()
    client, storage = app.test_client(), tmp_path / "operations"
    ids = [generate(client, prompt="a sunset over the sea", seed=3),
           generate(client, prompt=""),  # a failure is recorded, and backed up too
           generate(client, "/api/video/text-to-video", prompt="waves", duration=1, fps=4),
           generate(client, "/api/edit/image", prompt="sepia",
                    images=[(io.BytesIO(png_bytes()), "in.png")])]
    assert [status for status, _ in ids] == [200, 400, 200, 200]
    ids = [op_id for _, op_id in ids]
    wait_for(lambda: _backed_up(s3, bucket, storage, ids))
    remote = objects(s3, bucket)
    for op_id in ids:
        record = json.loads(remote[f"{op_id}.json"][0])
        assert record["operationId"] == op_id
        for entry in record["inputImages"] + record["outputs"]:
            data, stored = remote[entry["file"]]
            assert stored == sha(data) == entry["sha256"]
    assert json.loads(remote[f"{ids[1]}.json"][0])["status"] == "failed"
    assert any(n.endswith("_in_0.png") for n in remote)
    health = client.get("/api/health").get_json()["backup"]
    assert health["state"] == "ok" and health["backedUp"] == 4 and health["pending"] == 0
    assert health["lastSuccess"] and health["lastError"] is None


def test_the_record_goes_last_and_a_resaved_record_goes_again(make_app, s3, bucket,
                                                                monkeypatch):
    app = make_app()
    history, sent = app.extensions["history"], []
    real = app.extensions["backup"].target.upload
    monkeypatch.setattr(app.extensions["backup"].target, "upload",
                        lambda source, name, *a: sent.append(name) or real(source, name, *a))
    op_id = history.save({"operationType": "text_to_image", "status": "succeeded"},
                         inputs=[(png_bytes(), "a.png")],
                         outputs=[png_bytes(colour=(0, 9, 9))])["operationId"]
    wait_for(lambda: f"{op_id}.json" in sent)
    assert sent == [f"{op_id}_in_0.png", f"{op_id}_out.png", f"{op_id}.json"]
    history.update(op_id, lambda record: {"note": "changed later"})
    wait_for(lambda: json.loads(objects(s3, bucket)[f"{op_id}.json"][0]).get("note"))
    assert sent[3:] == [f"{op_id}.json"]  # the files, unchanged, are not sent again


def test_only_final_states_are_backed_up(make_app, s3, bucket):
    app = make_app()
    history = app.extensions["history"]
    op_id = history.save({"operationType": "text_to_image", "status": "running"})["operationId"]
    time.sleep(0.8)
    assert objects(s3, bucket) == {}
    history.update(op_id, lambda record: {"status": "canceled"})
    wait_for(lambda: f"{op_id}.json" in objects(s3, bucket))


def test_a_store_down_then_up_gets_the_backlog_and_generating_never_waits(make_app, s3, bucket,
                                                                          tmp_path):
    app = make_app()
    client = app.test_client()
    # Its first comparison with the bucket done: from now on only the pending list
    # (put back after each failure) knows what is left to send.
    wait_for(lambda: app.extensions["backup"].status()["lastSuccess"])
    s3.stop()
    try:
        started = time.monotonic()
        ids = [generate(client, prompt=f"a forest {n}", seed=n) for n in range(3)]
        assert [status for status, _ in ids] == [200, 200, 200]
        assert time.monotonic() - started < 5
        state = wait_for(lambda: (s := client.get("/api/health").get_json()["backup"])
                         ["state"] == "failing" and s)
        assert "does not answer" in state["lastError"] and state["pending"] >= 1
    finally:
        s3.start()
    wait_for(lambda: _backed_up(s3, bucket, tmp_path / "operations", [i for _, i in ids]))
    state = wait_for(lambda: (s := client.get("/api/health").get_json()["backup"])
                     ["pending"] == 0 and s)
    assert state["state"] == "ok" and state["lastError"] is None and state["backedUp"] == 3


def test_a_restart_sends_what_was_pending_or_made_while_backup_was_off(make_app, s3, bucket,
                                                                       tmp_path):
    storage = tmp_path / "operations"
    off = create_app({"TESTING": True, "STORAGE_DIR": str(storage), "HISTORY_CHECK_WAITS": True})
    made_off = generate(off.test_client(), prompt="made while backup was off")[1]
    old = off.extensions["history"].save({"operationId": "20200105_archivedop1",
                                          "operationType": "text_to_image",
                                          "status": "succeeded"}, outputs=[png_bytes()])
    assert off.test_cli_runner().invoke(args=["history", "compress", "--older-than", "1d"]
                                        ).exit_code == 0
    off.extensions["jobs"].stop_workers()
    # A process killed mid-upload leaves its claim in working/, unlocked, and its marks.
    dead = make_app(BACKUP_AUTO=False)
    pending = dead.extensions["backup"].pending
    killed = generate(dead.test_client(), prompt="killed mid-upload")[1]
    waiting = generate(dead.test_client(), prompt="still pending")[1]
    pending.add(killed)
    pending.add(waiting)
    claim = pending.claim(killed)
    os.close(claim.fd)  # its process died: the lock went with it
    assert objects(s3, bucket) == {}
    make_app()  # the restart
    wait_for(lambda: _backed_up(s3, bucket, storage, [made_off, killed, waiting])
             and {f"{i}.json" for i in (made_off, killed, waiting)} <= set(objects(s3, bucket)))
    wait_for(lambda: pending.count() == 0)
    assert not list(pending.working.iterdir())
    archive = (storage / "archives" / "20200105.zip").read_bytes()
    wait_for(lambda: objects(s3, bucket).get("archives/20200105.zip") == (archive, sha(archive)))
    assert f"{old['operationId']}.json" in objects(s3, bucket)


def test_without_backup_url_nothing_changes(app, client, runner):
    assert app.extensions["backup"] is None
    assert client.post("/api/generate/text-to-image", json={"prompt": "x"}).status_code == 200
    assert client.get("/api/health").get_json()["backup"] == {"enabled": False}
    result = runner.invoke(args=["backup", "status"])
    assert result.exit_code == 1 and "Backup is off: set BACKUP_URL" in result.output
    assert "BACKUP_URL=s3://bucket/prefix" in client.get("/admin").get_data(as_text=True)


def test_admin_page_shows_the_backup(make_app, s3):
    app = make_app()
    client = app.test_client()
    op_id = generate(client, prompt="a city at night")[1]
    wait_for(lambda: app.extensions["backup"].status()["backedUp"] == 1)
    page = client.get("/admin").get_data(as_text=True)
    assert "<h2>Backup</h2>" in page and "<strong>ok</strong>" in page
    assert "Backed up: 1 operation(s); pending: 0" in page and op_id


def test_an_unusable_backup_folder_breaks_neither_generating_nor_health(make_app, tmp_path):
    app = make_app(BACKUP_AUTO=False)
    (tmp_path / "operations" / ".backup").write_text("not a folder")
    client = app.test_client()
    with app.app_context():
        app.extensions["backup"].saw(app.extensions["history"], {"operationId": "20260101_x",
                                                                 "status": "succeeded"})
    assert generate(client, prompt="still answered")[0] == 200
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.get_json()["backup"]["state"] == "unknown"
    assert "Backup" in client.get("/admin").get_data(as_text=True)


def test_backup_url_may_be_a_plain_environment_variable(s3, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUP_URL", f"s3://{bucket}/{PREFIX}")
    monkeypatch.setenv("BACKUP_ENDPOINT_URL", s3.url)
    app = create_app({"STORAGE_DIR": str(tmp_path / "operations"), "HISTORY_CHECK_WAITS": True,
                      "BACKUP_AUTO": False})
    try:
        assert app.extensions["backup"].target.url == f"s3://{bucket}/{PREFIX}"
        assert app.extensions["backup"].target.endpoint == s3.url
    finally:
        app.extensions["jobs"].stop_workers()
