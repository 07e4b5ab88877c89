"""@records_operation: what lands on disk for successes, failures and save errors."""

import base64
import logging
import re
import shutil
from datetime import datetime

import pytest

from generation_studio.errors import GenerationError

from .conftest import open_image, png_bytes, stored_names

PROMPT = {"prompt": "a lighthouse by the sea", "aspectRatio": "16:9", "seed": 42}


def test_success_is_recorded_with_its_result(client, records, storage_dir, caplog):
    with caplog.at_level(logging.INFO):
        response = client.post("/api/generate/text-to-image", json={**PROMPT, "guidance": 3.5})
    assert response.status_code == 200
    body = response.get_json()
    [record] = records()
    op_id = record["operationId"]
    assert f"Operation accepted: {op_id} (text_to_image)" in caplog.messages
    assert body["success"] is True and body["operationId"] == op_id and body["saved"] is True
    assert record["operationType"] == "text_to_image"
    assert record["status"] == "succeeded"
    assert record["prompt"] == "a lighthouse by the sea"
    assert record["parameters"] == {"aspectRatio": "16:9", "seed": 42, "guidance": 3.5}
    assert record["error"] is None and record["errorType"] is None
    assert record["provider"]["name"] == "local" and record["provider"]["model"]
    assert record["provider"]["seed"] == 42
    assert record["createdAt"].endswith("Z") and record["completedAt"] >= record["createdAt"]
    assert record["durationMs"] > 0
    assert record["inputImages"] == [] and record["workflowAnalysis"] is None
    assert record["resultFile"] == f"{op_id}_out.jpg"
    image = open_image((storage_dir / record["resultFile"]).read_bytes())
    assert image.format == "JPEG" and image.size == (1344, 768)
    assert body["fileUrl"] == f"/api/history/{op_id}/files/{op_id}_out.jpg"
    assert body["resultUrl"] == body["fileUrl"]
    served = client.get(body["fileUrl"])
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert served.data == (storage_dir / record["resultFile"]).read_bytes()


def test_a_failed_generation_is_recorded_then_answered_as_an_error(client, app, records,
                                                                 monkeypatch):
    def explode(task):
        raise GenerationError("the engine ran out of paint")

    monkeypatch.setattr(app.extensions["generation_provider"], "run", explode)
    response = client.post("/api/generate/text-to-image", json=PROMPT)
    assert response.status_code == 500
    body = response.get_json()
    assert body == {"success": False, "error": "the engine ran out of paint",
                    "operationId": body["operationId"]}
    [record] = records()
    assert record["operationId"] == body["operationId"]
    assert record["status"] == "failed"
    assert record["error"] == "the engine ran out of paint"
    assert record["errorType"] == "GenerationError"
    assert record["prompt"] == "a lighthouse by the sea"
    assert record["resultFile"] is None and record["outputs"] == []


def test_an_unexpected_exception_is_recorded_with_its_text_but_not_shown(client, app, records,
                                                                        monkeypatch):
    def bug(task):
        raise ZeroDivisionError("division by zero in the palette")

    monkeypatch.setattr(app.extensions["generation_provider"], "run", bug)
    response = client.post("/api/generate/text-to-image", json=PROMPT)
    assert response.status_code == 500
    assert "ZeroDivisionError" in response.get_json()["error"]
    assert "palette" not in response.get_json()["error"]
    [record] = records()
    assert record["error"] == "division by zero in the palette"
    assert record["errorType"] == "ZeroDivisionError"


def test_an_exception_without_text_is_recorded_with_what_the_client_was_told(client, app,
                                                                           records, monkeypatch):
    def bug(task):
        raise RuntimeError()

    monkeypatch.setattr(app.extensions["generation_provider"], "run", bug)
    response = client.post("/api/generate/text-to-image", json=PROMPT)
    assert response.status_code == 500
    [record] = records()
    assert record["error"] == response.get_json()["error"] == \
        "Internal error (RuntimeError); see the server log"


def test_a_refused_request_is_recorded_failed_with_its_provider_and_times(client, records,
                                                                         caplog):
    with caplog.at_level(logging.INFO, logger="generation_studio"):
        response = client.post("/api/generate/text-to-image", json={"prompt": ""})
    assert response.status_code == 400
    [record] = records()
    assert record["operationId"] == response.get_json()["operationId"]
    assert (record["status"], record["error"], record["errorField"]) == \
        ("failed", response.get_json()["error"], "prompt")
    assert record["provider"] == {"name": "local", "model": None}
    assert record["createdAt"].endswith("Z") and record["completedAt"].endswith("Z")
    created, completed = (datetime.fromisoformat(record[k].replace("Z", "+00:00"))
                          for k in ("createdAt", "completedAt"))
    elapsed = (completed - created).total_seconds() * 1000  # to the millisecond
    assert isinstance(record["durationMs"], float) and record["durationMs"] > 0
    assert record["durationMs"] == round(record["durationMs"], 1)
    assert abs(record["durationMs"] - elapsed) <= 1
    assert f"Operation saved: {record['operationId']} (text_to_image, failed)" in \
        [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("key", ["apiKey", "api_key", "token", "REPLICATE_API_TOKEN",
                                 "password", "clientSecret", "key", "Authorization"])
def test_secrets_never_reach_the_record(client, records, storage_dir, key):
    client.post("/api/generate/text-to-image", json={**PROMPT, key: "s3cr3t-value"})
    [record] = records()
    assert key not in record["parameters"]
    assert not any("s3cr3t-value" in p.read_text() for p in storage_dir.glob("*.json"))


def test_a_configured_secret_is_dropped_whatever_its_key(client, app, records):
    app.config["REPLICATE_API_TOKEN"] = "r8_abcdef123456"
    client.post("/api/generate/text-to-image", json={**PROMPT, "note": "r8_abcdef123456"})
    assert "note" not in records()[0]["parameters"]


def test_unwritable_storage_still_answers_200_and_logs(client, storage_dir, caplog):
    shutil.rmtree(storage_dir)
    storage_dir.write_text("a file where the folder should be")
    with caplog.at_level(logging.ERROR):
        response = client.post("/api/generate/text-to-image", json=PROMPT)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True and body["saved"] is False and body["operationId"] is None
    # Nothing keeps the result, so it comes inline rather than being lost.
    assert body["resultUrl"].startswith("data:image/jpeg;base64,")
    [line] = [m for m in caplog.messages if m.startswith("Could not save operation ")]
    assert re.fullmatch(r"Could not save operation \d{8}_[a-z0-9]{12} \(text_to_image\): "
                        r"\[Errno 20\] Not a directory: '.+'; it runs in the request and its "
                        r"result is sent inline", line), line


def test_a_result_the_storage_has_no_room_for_is_inline_and_leaves_no_record_to_run_again(
        app, client, storage_dir, monkeypatch):
    """Its accepted record fitted, then the queue and the result did not: the
    answer is inline (not saved), and nothing is left to be run again later."""
    from generation_studio.history import HistoryService
    jobs, real_update = app.extensions["jobs"], HistoryService.update

    def no_queue(op_id):
        raise OSError(28, "No space left on device")

    def no_room(self, op_id, change, outputs=(), durable=True):
        if outputs:
            raise OSError(28, "No space left on device")
        return real_update(self, op_id, change, outputs, durable)

    monkeypatch.setattr(jobs, "enqueue", no_queue)
    monkeypatch.setattr(HistoryService, "update", no_room)
    response = client.post("/api/generate/text-to-image", json=PROMPT)
    body = response.get_json()
    assert (response.status_code, body["saved"], body["operationId"]) == (200, False, None)
    assert body["resultUrl"].startswith("data:image/jpeg;base64,")
    assert sorted(p.name for p in storage_dir.iterdir() if p.is_file()) == []
    assert app.extensions["history"].unfinished() == []


def test_unwritable_storage_keeps_the_error_answer_of_a_failed_request(client, storage_dir,
                                                                        caplog):
    shutil.rmtree(storage_dir)
    storage_dir.write_text("not a folder")
    with caplog.at_level(logging.ERROR):
        response = client.post("/api/generate/text-to-image", json={"prompt": ""})
    assert response.status_code == 400
    assert "operationId" not in response.get_json()
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert line.startswith("Could not record the refused text_to_image request: ")
    assert line.endswith(" (NotADirectoryError)") and str(storage_dir) in line


def test_unwritable_storage_still_edits_an_image_and_answers_it_inline(client, storage_dir):
    shutil.rmtree(storage_dir)
    storage_dir.write_text("a file where the folder should be")
    image = png_bytes((64, 48))
    response = client.post("/api/edit/image", json={
        "prompt": "make it blue",
        "images": ["data:image/png;base64," + base64.b64encode(image).decode()]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["saved"] is False and body["resultUrl"].startswith("data:image/")
    result = open_image(base64.b64decode(body["resultUrl"].split(",", 1)[1]))
    assert result.size[0] / result.size[1] == pytest.approx(64 / 48, rel=0.05)


def test_recording_can_be_switched_off(client, app, storage_dir):
    app.config["RECORDING_ENABLED"] = False
    response = client.post("/api/generate/text-to-image", json=PROMPT)
    assert response.status_code == 200
    assert response.get_json()["resultUrl"].startswith("data:image/jpeg;base64,")
    assert stored_names(storage_dir) == []


def test_the_undecorated_view_is_kept(app):
    view = app.view_functions["generate.text_to_image"]
    assert view.unrecorded.__name__ == "text_to_image"
