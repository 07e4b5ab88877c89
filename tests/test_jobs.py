"""Durable operations in one process: accepted, queued, run, followed, canceled,
taken up again after their worker died."""

import io
import json
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from generation_studio import create_app
from generation_studio.history.filters import iso

from .conftest import png_bytes

PROMPT = {"prompt": "a lighthouse at night", "aspectRatio": "1:1", "seed": 5}
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def make(storage_dir):
    """Apps on one storage folder, as separate server processes would be."""
    made = []

    def make_app(**settings):
        app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                          "HISTORY_CHECK_WAITS": True, "MAX_VIDEO_FRAMES": 24,
                          "LOCAL_VIDEO_SIZE": 96, **settings})
        made.append(app)
        return app

    yield make_app
    for app in made:
        app.extensions["jobs"].stop_workers()


def wait_for_status(app, op_id, statuses, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        record = app.extensions["history"].get(op_id)
        if record and record["status"] in statuses:
            return record
        time.sleep(0.02)
    raise AssertionError(f"{op_id} is {app.extensions['history'].get(op_id)['status']}")


def output_bytes(app, record):
    return app.extensions["history"].read_file(record["operationId"], record["resultFile"])


def test_an_accepted_operation_is_on_disk_queued_before_it_runs(make, storage_dir):
    app = make(QUEUE_IN_PROCESS=False)
    answer = app.test_client().post("/api/generate/img-to-img", headers=ASYNC, data={
        "prompt": "a cat", "strength": "0.4", "image": (io.BytesIO(png_bytes()), "cat.png")},
        content_type="multipart/form-data")
    assert answer.status_code == 202
    body = answer.get_json()
    op_id = body["operationId"]
    assert answer.headers["Location"] == f"/api/history/{op_id}"
    assert body == {"success": True, "operationId": op_id, "operationType": "img_to_img",
                    "status": "queued", "progress": None, "statusUrl": f"/api/history/{op_id}",
                    "eventsUrl": f"/api/history/{op_id}/events",
                    "cancelUrl": f"/api/history/{op_id}/cancel"}
    record = json.loads((storage_dir / f"{op_id}.json").read_text())
    assert (record["status"], record["prompt"], record["parameters"]) == (
        "queued", "a cat", {"strength": "0.4"})
    assert (storage_dir / record["inputImages"][0]["file"]).read_bytes() == png_bytes()
    seed = record["task"]["params"]["seed"]
    assert isinstance(seed, int) and record["task"]["params"]["strength"] == 0.4
    assert record["outputs"] == [] and record["startedAt"] is None
    assert list(record) == [  # the record as a person reads it with cat, in this order
        "operationId", "operationType", "status", "createdAt", "startedAt", "completedAt",
        "durationMs", "progress", "prompt", "parameters", "task", "resultUrl", "resultUrls",
        "workflowAnalysis", "error", "errorType", "provider", "schemaVersion", "inputImages",
        "outputs", "resultFile"]
    assert [record[k] for k in ("completedAt", "durationMs", "resultUrl", "resultUrls",
                                "workflowAnalysis", "error", "errorType", "resultFile")] == \
        [None, None, None, [], None, None, None, None]
    assert record["provider"] == {"name": "local", "model": None}
    assert (record["task"]["operation"], record["task"]["route"]) == (
        "img_to_img", "/api/generate/img-to-img")
    app.extensions["jobs"].start_workers()
    done = wait_for_status(app, op_id, ("succeeded",))
    assert done["createdAt"] <= done["startedAt"] <= done["completedAt"]
    assert done["progress"] == 1.0 and done["provider"]["seed"] == seed and done["lease"] is None
    status = app.test_client().get(f"/api/history/{op_id}").get_json()["operation"]
    assert status["status"] == "succeeded" and status["resultFile"] == f"{op_id}_out.jpg"


def test_by_default_the_request_waits_for_its_job_and_answers_200(client, records):
    answer = client.post("/api/generate/text-to-image", json=PROMPT)
    assert answer.status_code == 200
    body = answer.get_json()
    [record] = records()
    assert body["status"] == record["status"] == "succeeded"
    assert body["fileUrl"] == f"/api/history/{record['operationId']}/files/{record['resultFile']}"
    assert record["attempts"] == 1


def test_a_wait_that_runs_out_answers_202_and_the_job_goes_on(make, monkeypatch):
    app = make()
    provider = app.extensions["generation_provider"]
    real = provider.run

    def slow(task):
        time.sleep(3)
        return real(task)

    monkeypatch.setattr(provider, "run", slow)
    started = time.monotonic()
    answer = app.test_client().post("/api/generate/text-to-image", json=PROMPT,
                                    headers={"Prefer": "wait=1"})
    # about 1 s: well before the job's 3 s (room for a slow disk's fsyncs: CI once took 1.75)
    assert answer.status_code == 202 and 0.9 < time.monotonic() - started < 2.0
    assert answer.get_json()["status"] == "running"
    wait_for_status(app, answer.get_json()["operationId"], ("succeeded",))


def test_canceling_a_queued_operation_means_it_never_runs(make, monkeypatch):
    app = make(QUEUE_IN_PROCESS=False)
    calls = []
    provider = app.extensions["generation_provider"]
    monkeypatch.setattr(provider, "run", lambda task: calls.append(task))
    client = app.test_client()
    op_id = client.post("/api/generate/text-to-image", json=PROMPT,
                        headers=ASYNC).get_json()["operationId"]
    answer = client.post(f"/api/history/{op_id}/cancel")
    assert answer.status_code == 200 and answer.get_json()["operation"]["status"] == "canceled"
    app.extensions["jobs"].start_workers()
    time.sleep(0.5)
    record = app.extensions["history"].get(op_id)
    assert (record["status"], record["outputs"], calls) == ("canceled", [], [])


def test_canceling_a_running_local_video_stops_it_within_two_seconds(make, storage_dir):
    app = make(MAX_VIDEO_FRAMES=900, LOCAL_VIDEO_SIZE=1024)
    client = app.test_client()
    answer = client.post("/api/video-image/animate-image", headers=ASYNC, data={
        "prompt": "zoom in", "duration": "30", "fps": "30",
        "image": (io.BytesIO(png_bytes((1200, 800), pattern=True)), "a.png")},
        content_type="multipart/form-data")
    op_id = answer.get_json()["operationId"]
    deadline = time.time() + 20
    while (app.extensions["history"].get(op_id).get("progress") or 0) < 0.02:
        assert time.time() < deadline
        time.sleep(0.05)
    asked = time.monotonic()
    cancel = client.post(f"/api/history/{op_id}/cancel")
    assert cancel.status_code == 200
    assert cancel.get_json()["operation"]["status"] == "canceled"
    assert time.monotonic() - asked < 2
    record = app.extensions["history"].get(op_id)
    assert record["status"] == "canceled" and record["outputs"] == []
    assert list(storage_dir.glob(f"{op_id}_out*")) == []


def test_canceling_a_finished_operation_is_409_and_changes_nothing(client, records):
    op_id = client.post("/api/generate/text-to-image", json=PROMPT).get_json()["operationId"]
    [before] = records()
    answer = client.post(f"/api/history/{op_id}/cancel")
    assert answer.status_code == 409
    assert answer.get_json()["error"] == (f"Operation {op_id} has already succeeded: "
                                          "there is nothing to cancel")
    assert records() == [before]
    assert client.post("/api/history/20261124_nosuchopxxxx/cancel").status_code == 404


def test_a_queued_workflow_shows_its_plan_and_its_steps_before_it_runs(make, storage_dir):
    app = make(QUEUE_IN_PROCESS=False)
    answer = app.test_client().post("/api/workflow/execute", headers=ASYNC, json={
        "prompt": "a lighthouse, as a video", "duration": "1", "fps": "2"})
    assert answer.status_code == 202
    record = json.loads((storage_dir / f"{answer.get_json()['operationId']}.json").read_text())
    assert record["status"] == "queued"
    plan = record["task"]["plan"]
    assert record["workflowAnalysis"] == plan
    assert [s["operation"] for s in plan["steps"]] == ["text_to_image", "image_to_video_single"]
    assert len(record["steps"]) == 2 and len(set(record["steps"])) == 2


def test_cancel_needs_the_admin_token_when_set(make):
    app = make(QUEUE_IN_PROCESS=False, ADMIN_TOKEN="let-me-in")
    client = app.test_client()
    op_id = client.post("/api/generate/text-to-image", json=PROMPT,
                        headers=ASYNC).get_json()["operationId"]
    assert client.post(f"/api/history/{op_id}/cancel").status_code == 401
    assert app.extensions["history"].get(op_id)["status"] == "queued"
    assert client.post(f"/api/history/{op_id}/cancel",
                       headers={"Authorization": "Bearer let-me-in"}).status_code == 200


def test_events_stream_the_status_until_the_operation_ends(client):
    op_id = client.post("/api/video/text-to-video", headers=ASYNC, json={
        "prompt": "waves", "duration": 2, "fps": 12}).get_json()["operationId"]
    response = client.get(f"/api/history/{op_id}/events")
    assert response.mimetype == "text/event-stream"
    events = []
    for block in response.get_data(as_text=True).split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line
                     and not line.startswith(":"))
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    assert events[-1][0] == "end"
    assert events[-1][1]["operation"]["status"] == "succeeded"
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses[-1] == "succeeded" and len(statuses) == len(set(map(str, [
        (d["status"], d["progress"]) for k, d in events if k == "status"])))


def running_with_a_dead_worker(app, op_id, lease_until):
    """Make ``op_id`` look as a worker that died left it."""
    dead = f"{socket.gethostname()}:999999999:1"
    app.extensions["history"].update(op_id, lambda r: {
        "status": "running", "startedAt": r["createdAt"],
        "lease": {"owner": dead, "until": lease_until}})


def test_a_job_whose_worker_died_runs_again_and_gives_the_same_bytes(make):
    app = make()
    client = app.test_client()
    first = client.post("/api/generate/text-to-image", json=PROMPT).get_json()
    expected = output_bytes(app, app.extensions["history"].get(first["operationId"]))
    app.extensions["jobs"].stop_workers()  # else its workers would take the next job
    lost = make(QUEUE_IN_PROCESS=False)
    op_id = lost.test_client().post("/api/generate/text-to-image", json=PROMPT,
                                    headers=ASYNC).get_json()["operationId"]
    lost.extensions["jobs"].huey.flush()  # the dead worker had taken it off the queue
    future = iso(datetime.now(timezone.utc) + timedelta(hours=1))
    running_with_a_dead_worker(lost, op_id, future)  # dead process: no need to wait
    restarted = make()
    restarted.extensions["jobs"].start_workers()
    record = wait_for_status(restarted, op_id, ("succeeded",))
    assert record["attempts"] == 1 and output_bytes(restarted, record) == expected


def test_a_job_held_by_a_live_worker_is_left_alone(make):
    app = make(QUEUE_IN_PROCESS=False)
    op_id = app.test_client().post("/api/generate/text-to-image", json=PROMPT,
                                   headers=ASYNC).get_json()["operationId"]
    live = f"{socket.gethostname()}:1:1"  # pid 1 is alive
    until = iso(datetime.now(timezone.utc) + timedelta(seconds=60))
    app.extensions["history"].update(op_id, lambda r: {"status": "running",
                                                       "lease": {"owner": live, "until": until}})
    app.extensions["jobs"].start_workers()
    app.extensions["jobs"].enqueue(op_id)
    time.sleep(0.6)
    assert app.extensions["history"].get(op_id)["lease"]["owner"] == live


def test_queued_jobs_survive_a_restart_of_every_process(make):
    first = make(QUEUE_IN_PROCESS=False)
    ids = [first.test_client().post("/api/generate/text-to-image", headers=ASYNC, json={
        **PROMPT, "seed": n}).get_json()["operationId"] for n in range(6)]
    del first
    again = make()
    again.extensions["jobs"].start_workers()
    for op_id in ids:
        assert wait_for_status(again, op_id, ("succeeded", "failed"))["status"] == "succeeded"


def test_a_worker_whose_queue_cannot_be_opened_yet_takes_it_up_once_it_can(make, monkeypatch,
                                                                             caplog):
    """Its folder read-only at start, say: the worker says so once and tries
    again, so the jobs queued once it is writable run without a restart."""
    import logging
    from generation_studio.jobs import queue, service
    monkeypatch.setattr(service, "QUEUE_RETRY_SECONDS", 0.05)
    real, refused = queue.make_queue, []

    def make_queue(config):
        if len(refused) < 5:
            refused.append(1)
            raise OSError(30, "Read-only file system")
        return real(config)

    web = make(QUEUE_IN_PROCESS=False)
    op_id = web.test_client().post("/api/generate/text-to-image", headers=ASYNC, json={
        **PROMPT, "seed": 1}).get_json()["operationId"]  # queued: the web's queue opened
    monkeypatch.setattr(queue, "make_queue", make_queue)
    worker = make(QUEUE_IN_PROCESS=False)
    with caplog.at_level(logging.INFO):
        worker.extensions["jobs"].start_workers(2)
        assert wait_for_status(worker, op_id, ("succeeded", "failed"))["status"] == "succeeded"
    said = [r.getMessage() for r in caplog.records if "job queue" in r.getMessage()]
    assert said == ["No job queue ([Errno 30] Read-only file system): operations run in their "
                    "requests until it can be opened (tried every 0.05 s)",
                    "The job queue is open"]
    assert len(refused) == 5


def test_a_job_queued_many_times_at_once_runs_once(make, monkeypatch):
    app = make(QUEUE_IN_PROCESS=False, QUEUE_THREADS=4)
    provider = app.extensions["generation_provider"]
    real, calls = provider.run, []

    def counted(task):
        calls.append(task)
        time.sleep(0.2)
        return real(task)

    monkeypatch.setattr(provider, "run", counted)
    op_id = app.test_client().post("/api/generate/text-to-image", json=PROMPT,
                                   headers=ASYNC).get_json()["operationId"]
    jobs = app.extensions["jobs"]
    for _ in range(5):
        jobs.enqueue(op_id)
    jobs.start_workers(4)
    wait_for_status(app, op_id, ("succeeded",))
    time.sleep(0.3)
    assert len(calls) == 1


def test_a_workflow_runs_as_a_job_and_records_each_step(make):
    app = make()
    answer = app.test_client().post("/api/workflow/execute", data={
        "prompt": "make it sepia, then animate it", "duration": "1", "fps": "4",
        "images": [(io.BytesIO(png_bytes((80, 60), pattern=True)), "a.png")]},
        content_type="multipart/form-data")
    assert answer.status_code == 200
    body = answer.get_json()
    history = app.extensions["history"]
    parent = history.get(body["operationId"])
    assert parent["operationType"] == "edit_then_video" and parent["status"] == "succeeded"
    steps = history.get_many(parent["steps"])
    assert [steps[s]["operationType"] for s in parent["steps"]] == [
        "image_edit_single", "image_to_video_single"]
    assert {steps[s]["parentId"] for s in parent["steps"]} == {parent["operationId"]}
    assert output_bytes(app, parent) == output_bytes(app, steps[parent["steps"][1]])
    assert body["steps"] == parent["steps"]


def test_a_workflow_taken_up_again_keeps_the_steps_already_done(make, monkeypatch):
    app = make()
    client = app.test_client()
    op_id = client.post("/api/workflow/execute", json={
        "prompt": "sepia, then animate", "duration": 1, "fps": 4,
        "images": ["data:image/png;base64," + __import__("base64").b64encode(
            png_bytes((80, 60), pattern=True)).decode()]}).get_json()["operationId"]
    history = app.extensions["history"]
    parent = history.get(op_id)
    first, second = parent["steps"]
    kept = history.get(first)
    history.delete(second)
    running_with_a_dead_worker(app, op_id, iso(datetime.now(timezone.utc) - timedelta(1)))
    calls = []
    provider = app.extensions["generation_provider"]
    real = provider.run
    monkeypatch.setattr(provider, "run", lambda task: calls.append(task.operation) or real(task))
    app.extensions["jobs"].stop_workers()
    app.extensions["jobs"]._workers = []
    app.extensions["jobs"].start_workers()
    record = wait_for_status(app, op_id, ("succeeded", "failed"))
    assert record["status"] == "succeeded" and calls == ["image_to_video_single"]
    assert history.get(first) == kept and history.get(second)["status"] == "succeeded"


def test_a_cancel_stops_a_workflow_between_steps(make, monkeypatch):
    app = make()
    client = app.test_client()
    provider = app.extensions["generation_provider"]
    real = provider.run
    gate = threading.Event()

    def held(task):
        if task.operation == "image_to_video_single":
            gate.wait(5)
            task.on_progress({"progress": 0.5})  # the next report stops it
        return real(task)

    monkeypatch.setattr(provider, "run", held)
    op_id = client.post("/api/workflow/execute", headers=ASYNC, json={
        "prompt": "sepia, then animate", "duration": 1, "fps": 4,
        "images": ["data:image/png;base64," + __import__("base64").b64encode(
            png_bytes((80, 60), pattern=True)).decode()]}).get_json()["operationId"]
    wait_for_status(app, op_id, ("running",))
    app.extensions["jobs"].cancel(op_id)
    gate.set()
    record = wait_for_status(app, op_id, ("canceled", "succeeded", "failed"))
    assert record["status"] == "canceled" and record["outputs"] == []
    history = app.extensions["history"]
    assert history.get(record["steps"][0])["status"] == "succeeded"
    assert history.get(record["steps"][1]) is None
