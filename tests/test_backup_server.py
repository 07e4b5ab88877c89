"""The backup of a real server process: killed with SIGKILL while it
uploads, it leaves no record in the bucket without its files, and once
started again it sends everything; its log never shows the credentials."""

import json
import os
import signal
import time

import requests

from .backup_support import ACCESS_KEY, PREFIX, SECRET_KEY, free_port, objects, sha
from .servers import flask_run

pytest_plugins = ["tests.backup_fixtures"]


def _serve(storage, port, endpoint, bucket, log):
    return flask_run({"FLASK_STORAGE_DIR": str(storage), "FLASK_LOCAL_VIDEO_SIZE": "96",
                      "FLASK_MAX_VIDEO_FRAMES": "12", "FLASK_BACKUP_URL": f"s3://{bucket}/{PREFIX}",
                      "FLASK_BACKUP_ENDPOINT_URL": endpoint, "FLASK_BACKUP_RETRY_SECONDS": "0.2",
                      "FLASK_BACKUP_POLL_SECONDS": "0.2"}, log, port=port)


def _complete_records(remote: dict) -> set:
    """Ids of the records in the bucket; fails if one of them lacks a file."""
    ids = set()
    for name, (data, _) in remote.items():
        if name.endswith(".json"):
            record = json.loads(data)
            for entry in record.get("inputImages", []) + record.get("outputs", []):
                assert entry["file"] in remote, f"{name} is in the bucket without {entry['file']}"
                assert remote[entry["file"]][1] == sha(remote[entry["file"]][0]) == entry["sha256"]
            ids.add(record["operationId"])
    return ids


def test_kill_9_during_uploads_then_restart_backs_everything_up(s3, bucket, tmp_path):
    storage, port, log_path = tmp_path / "operations", free_port(), tmp_path / "server.log"
    with open(log_path, "w") as log:
        process, base = _serve(storage, port, s3.url, bucket, log)
        ids = []
        for n in range(12):
            answer = requests.post(f"{base}/api/generate/text-to-image", timeout=30,
                                   json={"prompt": f"a mountain lake {n}", "seed": n,
                                         "aspectRatio": "16:9", "outputFormat": "png"})
            assert answer.status_code == 200
            ids.append(answer.json()["operationId"])
        os.kill(process.pid, signal.SIGKILL)  # while the last ones are being sent
        process.wait(10)
        _complete_records(objects(s3, bucket))  # what is there is whole

        process, base = _serve(storage, port, s3.url, bucket, log)
        try:
            deadline = time.monotonic() + 20
            while _complete_records(objects(s3, bucket)) != set(ids):
                assert time.monotonic() < deadline, "the backlog was not sent after the restart"
                time.sleep(0.1)
            backup = requests.get(f"{base}/api/health", timeout=5).json()["backup"]
            assert backup["state"] in ("ok", "pending") and backup["lastError"] is None
        finally:
            process.terminate()
            process.wait(10)
    text = log_path.read_text()
    assert ACCESS_KEY not in text and SECRET_KEY not in text
