"""`flask backup run | verify | status | restore | prune` against a real S3
endpoint on loopback, and the failures a person meets: each one line."""

import io
import json
import os
import socket
import time

import pytest
from PIL import Image

from .backup_support import ACCESS_KEY, PREFIX, SECRET_KEY, free_port, generate, local_files, objects, sha
from .conftest import png_bytes

pytest_plugins = ["tests.backup_fixtures"]  # the s3, bucket and make_app fixtures


def _studio(make_app, **extra):
    """An app whose automatic backup is off: only the commands send."""
    app = make_app(BACKUP_AUTO=False, **extra)
    return app, app.test_client(), app.test_cli_runner()


def _history_of(app, client):
    ids = [generate(client, prompt="a lighthouse at sunset", seed=1),
           generate(client, prompt=""),
           generate(client, "/api/video/text-to-video", prompt="waves", duration=1, fps=4),
           generate(client, "/api/edit/image", prompt="sepia",
                    images=[(io.BytesIO(png_bytes()), "in.png")]),
           generate(client, "/api/workflow/execute", prompt="make it sepia, then animate it",
                    duration=1, fps=4, images=[(io.BytesIO(png_bytes(pattern=True)), "a.png")])]
    assert [status for status, _ in ids] == [200, 400, 200, 200, 200]
    return [op_id for _, op_id in ids]


def _old(history, day, colour=(1, 2, 3)):
    """An operation dated ``day`` (YYYYMMDD), as an older studio would have it."""
    op_id = f"{day}_{os.urandom(6).hex()}"
    return history.save({"operationId": op_id, "operationType": "text_to_image",
                         "status": "succeeded", "createdAt": f"{day[:4]}-{day[4:6]}-{day[6:]}"
                         "T10:00:00.000Z", "prompt": "old"},
                        outputs=[png_bytes(colour=colour)])["operationId"]


def test_run_sends_what_the_bucket_lacks_and_nothing_twice(make_app, s3, bucket, tmp_path):
    app, client, runner = _studio(make_app)
    ids = _history_of(app, client)
    result = runner.invoke(args=["backup", "run"])
    assert result.exit_code == 0, result.output
    ops = len(app.extensions["history"].locations())  # the workflow's steps are operations too
    assert f"Backed up {ops} operation(s) and 0 archive(s)" in result.stdout
    remote, local = objects(s3, bucket), local_files(tmp_path / "operations")
    assert set(remote) == set(local) and {f"{i}.json" for i in ids} <= set(remote)
    assert all(remote[n] == (data, sha(data)) for n, data in local.items())
    listed = s3.client().list_objects_v2(Bucket=bucket)["Contents"]
    again = runner.invoke(args=["backup", "run"])
    assert again.exit_code == 0
    assert "Backed up 0 operation(s) and 0 archive(s), 0 bytes" in again.stdout
    assert s3.client().list_objects_v2(Bucket=bucket)["Contents"] == listed  # nothing re-sent
    s3.client().delete_object(Bucket=bucket, Key=f"{PREFIX}/{ids[0]}.json")
    third = runner.invoke(args=["backup", "run"])
    assert "Backed up 1 operation(s)" in third.stdout and f"{ids[0]}.json" in objects(s3, bucket)


def test_verify_names_a_flipped_byte_a_missing_object_and_extras(make_app, s3, bucket):
    app, client, runner = _studio(make_app)
    ids = _history_of(app, client)
    assert runner.invoke(args=["backup", "run"]).exit_code == 0
    clean = runner.invoke(args=["backup", "verify"])
    assert clean.exit_code == 0, clean.output
    assert "0 missing, 0 different, 0 extra" in clean.stdout
    record = json.loads(objects(s3, bucket)[f"{ids[0]}.json"][0])
    flipped = record["outputs"][0]["file"]
    s3c, key = s3.client(), f"{PREFIX}/{flipped}"
    got = s3c.get_object(Bucket=bucket, Key=key)
    data = bytearray(got["Body"].read())
    data[len(data) // 2] ^= 0x01
    # The worst case: the sha256 metadata copied over, so only the bytes tell.
    s3c.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=got["Metadata"])
    result = runner.invoke(args=["backup", "verify"])
    assert result.exit_code == 1  # a difference alone fails it
    assert result.stdout.splitlines()[0].startswith(f"DIFFERENT {flipped}: its bytes hash to")
    s3c.delete_object(Bucket=bucket, Key=f"{PREFIX}/{ids[2]}.json")
    deleted = client.delete(f"/api/history/{ids[1]}")
    assert deleted.status_code == 200  # deleting locally keeps its backup
    assert f"{ids[1]}.json" in objects(s3, bucket)
    result = runner.invoke(args=["backup", "verify"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"DIFFERENT {flipped}: its bytes hash to") for line in lines)
    assert f"MISSING   {ids[2]}.json: not in the bucket" in lines
    assert f"EXTRA     {ids[1]}.json: in the bucket, not on this disk" in lines
    assert lines[-1].endswith("1 missing, 1 different, 1 extra")


def test_an_upload_that_does_not_arrive_whole_fails_the_run(make_app, s3, bucket, monkeypatch):
    app, client, runner = _studio(make_app)
    op_id = generate(client, prompt="a red barn")[1]
    target = app.extensions["backup"].target

    def damaged(source, name, sha256, content_type, size):  # a proxy losing the last byte
        data = source.read_bytes()[:-1] if hasattr(source, "read_bytes") else source.read()[:-1]
        target.client.put_object(Bucket=bucket, Key=target.key(name), Body=data,
                                 Metadata={"sha256": sha256})
    monkeypatch.setattr(target, "upload", damaged)
    result = runner.invoke(args=["backup", "run"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == \
        f"Error: {op_id}_out.jpg did not arrive whole in s3://{bucket}/{PREFIX}"
    assert f"{op_id}.json" not in objects(s3, bucket)  # so its record was not sent


def test_restore_into_an_empty_folder_gives_the_same_history(make_app, s3, bucket, tmp_path):
    app, client, runner = _studio(make_app)
    _history_of(app, client)
    assert runner.invoke(args=["backup", "run"]).exit_code == 0
    before = local_files(tmp_path / "operations")
    listing = client.get("/api/history?limit=100").get_json()["operations"]
    table = runner.invoke(args=["history", "list"]).stdout

    empty = tmp_path / "new-disk"
    fresh, fresh_client, fresh_runner = _studio(make_app, storage_dir=empty)
    result = fresh_runner.invoke(args=["backup", "restore", "--all"])
    assert result.exit_code == 0, result.output
    count = len(app.extensions["history"].locations())
    assert f"Restored {count} operation(s); skipped 0; failed 0" in result.stdout
    assert local_files(empty) == before  # same names, same bytes, records included
    assert fresh.extensions["backup"].status()["backedUp"] == count  # and it knows they are
    assert fresh_client.get("/api/history?limit=100").get_json()["operations"] == listing
    assert fresh_runner.invoke(args=["history", "list"]).stdout == table
    assert not [p for p in empty.iterdir() if p.name.endswith(".tmp")]
    again = fresh_runner.invoke(args=["backup", "restore", "--all"])
    assert f"Restored 0 operation(s); skipped {count}; failed 0" in again.stdout
    one = listing[0]["operationId"]
    forced = fresh_runner.invoke(args=["backup", "restore", "--id", one, "--overwrite"])
    assert "Restored 1 operation(s)" in forced.stdout


def test_restore_refuses_bytes_that_do_not_match_their_sha256(make_app, s3, bucket, tmp_path):
    app, client, runner = _studio(make_app)
    op_id = generate(client, prompt="a red barn")[1]
    assert runner.invoke(args=["backup", "run"]).exit_code == 0
    name = f"{op_id}_out.jpg"
    s3c, key = s3.client(), f"{PREFIX}/{name}"
    got = s3c.get_object(Bucket=bucket, Key=key)
    s3c.put_object(Bucket=bucket, Key=key, Body=got["Body"].read()[:-1] + b"\0",
                   Metadata=got["Metadata"])
    empty = tmp_path / "new-disk"
    _, _, fresh_runner = _studio(make_app, storage_dir=empty)
    result = fresh_runner.invoke(args=["backup", "restore", "--id", op_id])
    assert result.exit_code == 1
    assert f"Failed {op_id}: {name}: its bytes hash to" in result.output
    assert local_files(empty) == {}  # no record, no file, no temp file


def test_restore_since_a_day(make_app, s3, bucket, tmp_path):
    app, _, runner = _studio(make_app)
    history = app.extensions["history"]
    old, recent = _old(history, "20200101"), _old(history, "20240105")
    assert runner.invoke(args=["backup", "run"]).exit_code == 0
    _, _, fresh_runner = _studio(make_app, storage_dir=tmp_path / "new-disk")
    result = fresh_runner.invoke(args=["backup", "restore", "--since", "2024-01-01"])
    assert "Restored 1 operation(s)" in result.stdout
    assert {p.name for p in (tmp_path / "new-disk").glob("*.json")} == {f"{recent}.json"}
    assert old
    bad = fresh_runner.invoke(args=["backup", "restore", "--since", "January"])
    assert bad.exit_code == 2 and "is not a date YYYY-MM-DD" in bad.output


def test_day_archives_are_backed_up_and_archived_operations_too(make_app, s3, bucket, tmp_path):
    app, _, runner = _studio(make_app)
    op_id = _old(app.extensions["history"], "20200102")
    assert runner.invoke(args=["history", "compress", "--older-than", "1d"]).exit_code == 0
    archive = tmp_path / "operations" / "archives" / "20200102.zip"
    assert archive.exists() and not (tmp_path / "operations" / f"{op_id}.json").exists()
    result = runner.invoke(args=["backup", "run"])
    assert "Backed up 1 operation(s) and 1 archive(s)" in result.stdout
    remote = objects(s3, bucket)
    assert remote["archives/20200102.zip"] == (archive.read_bytes(), sha(archive.read_bytes()))
    assert json.loads(remote[f"{op_id}.json"][0])["operationId"] == op_id
    assert runner.invoke(args=["backup", "verify"]).exit_code == 0


def test_large_files_go_up_in_parts(make_app, s3, bucket, tmp_path):
    app, _, runner = _studio(make_app, BACKUP_MULTIPART_MB=5)
    noise = Image.frombytes("RGB", (2000, 1900), os.urandom(2000 * 1900 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=0)
    op_id = app.extensions["history"].save({"operationType": "text_to_image",
                                            "status": "succeeded"},
                                           outputs=[buffer.getvalue()])["operationId"]
    assert runner.invoke(args=["backup", "run"]).exit_code == 0
    head = s3.client().head_object(Bucket=bucket, Key=f"{PREFIX}/{op_id}_out.png")
    assert head["ETag"].endswith('-3"')  # 11 MB in 5 MB parts
    assert head["Metadata"]["sha256"] == sha(buffer.getvalue())
    _, _, fresh_runner = _studio(make_app, storage_dir=tmp_path / "new-disk")
    assert "Restored 1" in fresh_runner.invoke(args=["backup", "restore", "--all"]).stdout
    assert (tmp_path / "new-disk" / f"{op_id}_out.png").read_bytes() == buffer.getvalue()


def test_prune_deletes_old_backups_of_operations_gone_from_disk(make_app, s3, bucket):
    app, client, runner = _studio(make_app)
    history = app.extensions["history"]
    gone, kept_here = _old(history, "20200103"), _old(history, "20200104", colour=(9, 9, 9))
    recent = generate(client, prompt="today")[1]
    assert runner.invoke(args=["backup", "run"]).exit_code == 0
    history.delete(gone)
    history.delete(recent)
    dry = runner.invoke(args=["backup", "prune", "--older-than", "30", "--dry-run"])
    assert dry.exit_code == 0
    lines = dry.stdout.splitlines()
    assert lines[:2] == [f"{gone}.json", f"{gone}_out.png"]  # the record first
    assert lines[2].startswith("Would delete 2 object(s), ") and len(lines) == 3
    assert lines[2].endswith("(dry run: nothing deleted)")
    assert f"{gone}.json" in objects(s3, bucket)
    done = runner.invoke(args=["backup", "prune", "--older-than", "30"])
    assert done.exit_code == 0 and "Deleted 2 object(s)" in done.stdout
    left = {n.split("_out")[0].split(".")[0] for n in objects(s3, bucket)}
    assert left == {kept_here, recent}


def test_status_says_backed_up_pending_failing_and_last_success(make_app, s3, bucket):
    app, client, runner = _studio(make_app)
    generate(client, prompt="one")
    assert runner.invoke(args=["backup", "run"]).exit_code == 0
    result = runner.invoke(args=["backup", "status"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"Backup to s3://{bucket}/{PREFIX}: ok"
    assert lines[1] == "Backed up: 1 operation(s); pending: 0"
    assert lines[2].startswith("Last success: 20")
    state = json.loads(runner.invoke(args=["backup", "status", "--json"]).stdout)
    assert state["backedUp"] == 1 and state["state"] == "ok"


def _silent_endpoint():
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("case, expected", [
    ("malformed", "BACKUP_URL must look like s3://bucket/prefix"),
    ("credentials in url", "BACKUP_URL must not carry credentials"),
    ("unknown bucket", "does not exist at http://127.0.0.1"),
    ("refused", "refused the credentials (InvalidAccessKeyId)"),
    ("closed port", "does not answer (EndpointConnectionError)"),
    ("silent endpoint", "does not answer (ReadTimeoutError)"),
])
def test_faults_are_one_clear_line_and_the_studio_keeps_generating(make_app, s3, bucket, case,
                                                                   expected):
    settings, silent = {}, None
    if case == "malformed":
        settings["BACKUP_URL"] = "s3:/Not A Bucket"
    elif case == "credentials in url":
        settings["BACKUP_URL"] = f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/x"
    elif case == "unknown bucket":
        settings["BACKUP_URL"] = "s3://no-such-bucket-here/x"
    elif case == "closed port":
        settings["BACKUP_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    elif case == "silent endpoint":
        silent, settings["BACKUP_ENDPOINT_URL"] = _silent_endpoint()
        settings["BACKUP_READ_TIMEOUT"] = 1
    app = make_app(**settings)
    client, runner = app.test_client(), app.test_cli_runner()
    if case == "refused":
        s3.enforce_auth(True)
    try:
        started = time.monotonic()
        result = runner.invoke(args=["backup", "run"])
        assert time.monotonic() - started < 8  # seconds, not boto3's minutes
        assert result.exit_code == 1
        assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
        assert expected in result.output and "Traceback" not in result.output
        assert generate(client, prompt="still working")[0] == 200
        app.extensions["backup"].uploader.start()
        state = _wait_failing(client)
        assert expected in state["lastError"]
        status = runner.invoke(args=["backup", "status"])
        assert status.exit_code == 0 and expected in status.stdout
        for text in (result.output, status.output, json.dumps(state)):
            assert ACCESS_KEY not in text and SECRET_KEY not in text
    finally:
        s3.enforce_auth(False)
        if silent:
            silent.close()


def _wait_failing(client):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = client.get("/api/health").get_json()["backup"]
        if state["state"] == "failing":
            return state
        time.sleep(0.05)
    raise AssertionError(f"never failing: {state}")


def test_credentials_appear_nowhere(make_app, s3, bucket, tmp_path, caplog):
    caplog.set_level("DEBUG", logger="generation_studio")
    app = make_app()
    client, runner = app.test_client(), app.test_cli_runner()
    ids = _history_of(app, client)
    outputs = [runner.invoke(args=["backup", command]).output
               for command in ("run", "verify", "status")]
    outputs.append(client.get("/api/health").get_data(as_text=True))
    outputs.append(client.get("/admin").get_data(as_text=True))
    s3.enforce_auth(True)  # refused: the error lines must not carry them either
    try:
        outputs.append(runner.invoke(args=["backup", "run"]).output)
    finally:
        s3.enforce_auth(False)
    assert ids and any("refused the credentials" in o for o in outputs)
    stored = [p.read_bytes() for p in (tmp_path / "operations").rglob("*") if p.is_file()]
    bucketed = [data for data, _ in objects(s3, bucket).values()]
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert not any(secret in text for text in outputs + [caplog.text])
        assert not any(secret.encode() in data for data in stored + bucketed)
