"""Providers' webhooks, over real HTTP both ways: the studio runs as a server at
``PUBLIC_URL`` and the loopback fakes call it back, signed, when a job ends."""

import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from generation_studio.providers import Task, webhooks
from generation_studio.routes import webhooks as webhook_routes
from generation_studio.storage import layout

from . import test_fal, test_replicate
from .conftest import hosted_app
from .fakes import FakeFal, FakeReplicate, LoopbackServer
from .servers import free_port, wait_for

FAKES = {"replicate": (FakeReplicate, test_replicate.TOKEN), "fal": (FakeFal, test_fal.KEY)}
CREATE = {"replicate": "/v1/models/black-forest-labs/flux-schnell/predictions",
          "fal": "/fal-ai/flux/schnell"}
STATUS = {"replicate": "/v1/predictions/job0", "fal": "/fal-ai/flux/requests/job0/status"}
ID = {"replicate": "predictionId", "fal": "requestId"}
URL = "/api/generate/text-to-image"
SLOW_POLLS = {"PROVIDER_POLL_INTERVAL": 30, "PROVIDER_WEBHOOK_POLL_INTERVAL": 30,
              "PROVIDER_IMAGE_DEADLINE": 120}


@pytest.fixture(params=["replicate", "fal"])
def name(request):
    return request.param


@pytest.fixture
def fake(name):
    fake = FAKES[name][0](FAKES[name][1])
    yield fake
    fake.close()


@pytest.fixture
def serve(storage_dir):
    """``serve(fake, **settings)``: the studio on ``fake``, served on a free port
    that is its PUBLIC_URL."""
    started = []

    def start(fake, **settings):
        app = hosted_app(fake, storage_dir, **settings)
        if "webhooks" not in app.blueprints:  # until routes/__init__.py registers it
            app.register_blueprint(webhook_routes.bp)
        server = LoopbackServer(app)
        app.config["PUBLIC_URL"] = server.origin
        started.append((app, server))
        return server.origin

    yield start
    for app, server in started:
        server.close()
        app.extensions["jobs"].stop_workers()


def record_bytes(storage_dir, op_id) -> bytes:
    return (storage_dir / layout.record_name(op_id)).read_bytes()


def record(storage_dir, op_id) -> dict:
    return json.loads(record_bytes(storage_dir, op_id))


def creates(fake, name):
    return [r for r in fake.made("POST") if r["path"] == CREATE[name]]


def webhook_of(fake, name, create):
    if name == "replicate":
        return create["json"]["webhook"]
    return create["args"]["fal_webhook"]


def start_async(origin, storage_dir, name) -> str:
    """An operation accepted at once, whose provider job is recorded."""
    answer = requests.post(origin + URL, json={"prompt": "a fox"},
                           headers={"Prefer": "respond-async"}, timeout=10)
    assert answer.status_code == 202, answer.text
    op_id = answer.json()["operationId"]
    wait_for(lambda: record(storage_dir, op_id).get("providerJob"))
    return op_id


# A job finished by its webhook, or by polling when none comes ---------------------------------
def test_the_webhook_finishes_the_job_without_waiting_for_a_poll(fake, name, serve, storage_dir):
    fake.polls_before_done = 1000  # polling alone would not finish it
    fake.webhook_delay = 0.3
    origin = serve(fake, **SLOW_POLLS)
    started = time.monotonic()
    answer = requests.post(origin + URL, json={"prompt": "a fox"}, timeout=60)
    took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert took < 3  # the next poll was 30 s away
    op_id = answer.json()["operationId"]
    [create] = creates(fake, name)
    assert webhook_of(fake, name, create) == f"{origin}/api/webhooks/{name}/{op_id}"
    if name == "replicate":
        assert create["json"]["webhook_events_filter"] == ["completed"]
    [call] = fake.webhooks
    assert call["status"] == 200 and call["url"] == f"{origin}/api/webhooks/{name}/{op_id}"
    assert len(fake.made("GET", STATUS[name])) == 1  # the one fetch the webhook woke
    saved = record(storage_dir, op_id)
    assert saved["status"] == "succeeded" and saved["provider"][ID[name]] == "job0"
    assert saved["providerJob"]["webhookUrl"] == f"{origin}/api/webhooks/{name}/{op_id}"
    assert (storage_dir / saved["resultFile"]).read_bytes() == fake.files["out.png"][0]


def test_without_a_webhook_the_job_finishes_by_polling(fake, name, serve, storage_dir):
    fake.send_webhooks, fake.polls_before_done = False, 2
    origin = serve(fake, PROVIDER_WEBHOOK_POLL_INTERVAL=0.02)
    answer = requests.post(origin + URL, json={"prompt": "a fox"}, timeout=60)
    assert answer.status_code == 200, answer.text
    [create] = creates(fake, name)
    assert webhook_of(fake, name, create).startswith(f"{origin}/api/webhooks/{name}/")
    assert fake.webhooks == []
    assert len(fake.made("GET", STATUS[name])) >= 2
    assert record(storage_dir, answer.json()["operationId"])["status"] == "succeeded"


def test_without_public_url_no_webhook_is_asked(fake, name, storage_dir):
    app = hosted_app(fake, storage_dir)
    try:
        assert app.test_client().post(URL, json={"prompt": "a fox"}).status_code == 200
    finally:
        app.extensions["jobs"].stop_workers()
    [create] = creates(fake, name)
    assert "webhook" not in create["json"] and "fal_webhook" not in create["args"]
    assert fake.webhooks == []


# Refused webhooks change nothing --------------------------------------------------------------
def forged_body(name: str, job_id: str) -> bytes:
    """What an attacker would like the studio to keep."""
    if name == "replicate":
        body = {"id": job_id, "status": "succeeded", "output": "https://evil.example/x.png"}
    else:
        body = {"request_id": job_id, "status": "OK",
                "payload": {"images": [{"url": "https://evil.example/x.png"}]}}
    return json.dumps(body).encode()


@contextlib.contextmanager
def another_key(fake, name):
    """The fake signs with a key that is not the account's."""
    attr = "signing_secret" if name == "replicate" else "signing_key"
    other = ("whsec_" + base64.b64encode(os.urandom(24)).decode() if name == "replicate"
             else Ed25519PrivateKey.generate())
    real = getattr(fake, attr)
    setattr(fake, attr, other)
    try:
        yield
    finally:
        setattr(fake, attr, real)


def refused_calls(fake, name):
    """(what, headers, body) of webhooks that must be refused with 401."""
    body = forged_body(name, "job0")
    yield "no signature", {}, body
    yield "another body than the one signed", fake.signed("job0", b'{"id": "job0"}'), body
    yield "signed ten minutes ago", fake.signed("job0", body, time.time() - 600), body
    signature = "webhook-signature" if name == "replicate" else "X-Fal-Webhook-Signature"
    yield "a garbled signature", {**fake.signed("job0", body), signature: "v1,AAAA"}, body
    with another_key(fake, name):
        yield "signed with another key", fake.signed("job0", body), body


def test_a_webhook_without_a_valid_signature_is_401_and_changes_nothing(
        fake, name, serve, storage_dir):
    fake.send_webhooks, fake.never_finish = False, True
    origin = serve(fake, **SLOW_POLLS)
    op_id = start_async(origin, storage_dir, name)
    before, polls = record_bytes(storage_dir, op_id), len(fake.made("GET", STATUS[name]))
    for what, headers, body in refused_calls(fake, name):
        answer = requests.post(f"{origin}/api/webhooks/{name}/{op_id}", data=body,
                               headers={"Content-Type": "application/json", **headers}, timeout=10)
        assert answer.status_code == 401, what
        assert answer.json()["success"] is False and answer.json()["error"].startswith(
            "Webhook refused: "), what
    time.sleep(0.5)  # a webhook taken would have polled at once
    assert record_bytes(storage_dir, op_id) == before
    assert len(fake.made("GET", STATUS[name])) == polls
    assert not (storage_dir / ".webhooks").exists()
    finish_by_webhook(fake, name, origin, storage_dir, op_id)


def test_a_signed_webhook_for_another_job_or_operation_changes_nothing(
        fake, name, serve, storage_dir):
    fake.send_webhooks, fake.never_finish = False, True
    origin = serve(fake, **SLOW_POLLS)
    op_id = start_async(origin, storage_dir, name)
    before = record_bytes(storage_dir, op_id)
    other_job = forged_body(name, "job99")
    answer = requests.post(f"{origin}/api/webhooks/{name}/{op_id}", data=other_job,
                           headers=fake.signed("job99", other_job), timeout=10)
    assert answer.status_code == 409
    assert answer.json()["error"] == (f"Operation {op_id} follows job job0, not "
                                      f"{'Replicate' if name == 'replicate' else 'fal.ai'} "
                                      "job job99")
    unknown = "20200101_aaaaaaaaaaaa"
    body = forged_body(name, "job0")
    answer = requests.post(f"{origin}/api/webhooks/{name}/{unknown}", data=body,
                           headers=fake.signed("job0", body), timeout=10)
    assert answer.status_code == 404 and answer.json()["error"] == f"No operation {unknown!r}"
    other = "fal" if name == "replicate" else "replicate"
    answer = requests.post(f"{origin}/api/webhooks/{other}/{op_id}", data=body,
                           headers=fake.signed("job0", body), timeout=10)
    assert answer.status_code == 404
    assert record_bytes(storage_dir, op_id) == before
    finish_by_webhook(fake, name, origin, storage_dir, op_id)


def finish_by_webhook(fake, name, origin, storage_dir, op_id):
    """The job's own webhook, signed, then finishes it at once (its next poll is 30 s away)."""
    fake.never_finish = False
    if name == "replicate":
        fake.polls_before_done = 1000
    fake.send_webhooks, fake.webhook_delay = True, 0
    fake.call_back_later(f"{origin}/api/webhooks/{name}/{op_id}", "job0")
    assert wait_for(lambda: record(storage_dir, op_id)["status"] == "succeeded", seconds=5)
    assert [call["status"] for call in fake.webhooks] == [200]
    assert len(creates(fake, name)) == 1


def test_a_webhook_after_the_poll_finished_the_job_changes_nothing(fake, name, serve, storage_dir):
    fake.send_webhooks, fake.polls_before_done = False, 1
    origin = serve(fake, PROVIDER_WEBHOOK_POLL_INTERVAL=0.02)
    answer = requests.post(origin + URL, json={"prompt": "a fox"}, timeout=60)
    op_id = answer.json()["operationId"]
    before = record_bytes(storage_dir, op_id)
    fake.send_webhooks, fake.webhook_delay = True, 0
    fake.call_back_later(f"{origin}/api/webhooks/{name}/{op_id}", "job0")
    wait_for(lambda: fake.webhooks)
    assert fake.webhooks[0]["status"] == 200
    assert record_bytes(storage_dir, op_id) == before
    assert not (storage_dir / ".webhooks").exists()  # nobody to wake: no marker left


# The signing secret -----------------------------------------------------------------------------
def test_replicate_secret_is_fetched_once_and_never_shown(replicate, serve, storage_dir, caplog):
    caplog.set_level(logging.DEBUG)
    replicate.polls_before_done, replicate.webhook_delay = 1000, 0.1
    origin = serve(replicate, **SLOW_POLLS)
    answers = [requests.post(origin + URL, json={"prompt": f"fox {n}"}, timeout=60)
               for n in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [call["status"] for call in replicate.webhooks] == [200, 200]
    assert len(replicate.made("GET", "/v1/webhooks/default/secret")) == 1
    secret = replicate.signing_secret
    key = secret.removeprefix("whsec_")
    for path in storage_dir.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    assert key not in caplog.text
    assert not any(key.encode() in call["body"] for call in replicate.webhooks)
    assert not any(key in a.text for a in answers)


def test_webhooks_are_refused_when_the_secret_cannot_be_had(replicate, serve, storage_dir):
    origin = serve(replicate, REPLICATE_API_TOKEN="r8_wrong")
    body = forged_body("replicate", "job0")
    answer = requests.post(f"{origin}/api/webhooks/replicate/20200101_aaaaaaaaaaaa", data=body,
                           headers=replicate.signed("job0", body), timeout=10)
    assert answer.status_code == 502
    assert answer.json()["error"].startswith("Replicate rejected the API token (401 Unauthorized)")


def test_the_local_provider_takes_no_webhooks(app):
    if "webhooks" not in app.blueprints:
        app.register_blueprint(webhook_routes.bp)
    answer = app.test_client().post("/api/webhooks/replicate/20200101_aaaaaaaaaaaa", data=b"{}")
    assert answer.status_code == 404
    assert answer.get_json()["error"] == "This studio runs no replicate jobs: no webhook is expected"


class Canceled(Exception):
    """What a queue's progress callback raises once the operation is canceled."""


def test_a_wake_lets_a_cancel_through_without_waiting_for_a_poll(fake, name, storage_dir):
    fake.send_webhooks, fake.never_finish = False, True
    app = hosted_app(fake, storage_dir, PUBLIC_URL="http://127.0.0.1:9", **SLOW_POLLS)
    provider, outcome = app.extensions["generation_provider"], []
    created, told, canceled = threading.Event(), threading.Event(), threading.Event()

    def progress(state):
        told.set()
        if canceled.is_set():
            raise Canceled()

    task = Task("text_to_image", "a fox", on_job=lambda details: created.set(),
                on_progress=progress)
    task.operation_id = "20240101_abcdefghijkl"
    thread = threading.Thread(target=lambda: outcome.append(_outcome(provider.run, task)))
    thread.start()
    assert created.wait(5)
    provider.arrivals.wake(task.operation_id)  # a first look: the job's state is told
    assert told.wait(3)
    canceled.set()
    provider.arrivals.wake(task.operation_id)  # the state is the same, and still told
    thread.join(3)
    assert not thread.is_alive() and isinstance(outcome[0], Canceled)
    assert outcome[0].details["canceled"] is True
    assert len(fake.made("POST" if name == "replicate" else "PUT", "/cancel")) == 1


def _outcome(call, *args):
    try:
        return call(*args)
    except Exception as e:  # noqa: BLE001 -- the test looks at what it was
        return e


# Signatures and arrivals, unit by unit ------------------------------------------------------------
def test_standard_webhooks_published_example():
    """The example of the Standard Webhooks specification."""
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,bm9ldHZhbGlk v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    body = b'{"test": 2432232314}'
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    webhooks.verify_standard(secret, headers, body, 300, now=1614265330 + 299)
    with pytest.raises(webhooks.SignatureRefused, match="too far from now"):
        webhooks.verify_standard(secret, headers, body, 300, now=1614265330 + 301)
    with pytest.raises(webhooks.SignatureRefused, match="does not match"):
        webhooks.verify_standard(secret, headers, body + b" ", 300, now=1614265330)


def test_a_webhook_to_another_process_wakes_its_follower(tmp_path):
    """Two processes sharing the storage folder: the marker file carries the news."""
    worker, web = webhooks.Arrivals(str(tmp_path)), webhooks.Arrivals(str(tmp_path))
    worker.expect("20240101_abc")
    web.wake("20240101_abc")
    started = time.monotonic()
    assert worker.wait("20240101_abc", 10) is True
    assert time.monotonic() - started < 1
    assert os.listdir(tmp_path) == []
    assert worker.wait("20240101_abc", 0.3) is False  # once only


# A restart between the create and the webhook --------------------------------------------------
STUDIO = """
import json, sys
from werkzeug.serving import make_server
from generation_studio import create_app
from generation_studio.routes import webhooks
app = create_app(json.loads(sys.argv[1]))
if "webhooks" not in app.blueprints:
    app.register_blueprint(webhooks.bp)
make_server("127.0.0.1", int(sys.argv[2]), app, threaded=True).serve_forever()
"""


def test_after_a_kill_the_restarted_studio_takes_the_webhook(fake, name, storage_dir):
    """The studio dies after the job was created; restarted at the same address,
    it resumes the job (no second create) and its webhook finishes it at once."""
    fake.send_webhooks, fake.polls_before_done = False, 1000
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    settings = {**FAKES_SETTINGS[name](fake, storage_dir), **SLOW_POLLS, "PUBLIC_URL": origin,
                "LEASE_SECONDS": 2}
    first = subprocess.Popen([sys.executable, "-c", STUDIO, json.dumps(settings), str(port)],
                             cwd=Path(__file__).resolve().parent.parent)
    try:
        wait_for(lambda: _answers(origin))
        op_id = start_async(origin, storage_dir, name)
    finally:
        first.kill()
        first.wait()
    webhook = record(storage_dir, op_id)["providerJob"]["webhookUrl"]
    assert webhook == f"{origin}/api/webhooks/{name}/{op_id}"
    app = hosted_app(fake, storage_dir, **settings)
    if "webhooks" not in app.blueprints:
        app.register_blueprint(webhook_routes.bp)
    server = LoopbackServer(app, port)
    try:
        app.extensions["jobs"].start_workers()
        wait_for(lambda: fake.made("GET", STATUS[name]))  # resumed: its first look
        started = time.monotonic()
        fake.send_webhooks, fake.webhook_delay = True, 0
        fake.call_back_later(webhook, "job0")
        wait_for(lambda: record(storage_dir, op_id)["status"] == "succeeded", seconds=10)
        assert time.monotonic() - started < 3  # its next poll was 30 s away
    finally:
        server.close()
        app.extensions["jobs"].stop_workers()
    assert len(creates(fake, name)) == 1
    assert [call["status"] for call in fake.webhooks] == [200]
    assert len(fake.made("GET", STATUS[name])) == 2  # the resume's first look, then the webhook's


FAKES_SETTINGS = {"replicate": test_replicate.settings, "fal": test_fal.settings}


def _answers(origin) -> bool:
    try:
        return requests.get(origin + "/api/health", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False
