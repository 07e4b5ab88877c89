"""The fal provider against a loopback fake of fal.ai's queue API."""

import logging

import pytest

from generation_studio import create_app

from .conftest import fast_provider_settings
from .fakes import FakeFal
from .test_routes import CASES, IDS, images, send

KEY = "fal-key-id:FAL_s3cr3t_value_123"
URL = "/api/generate/text-to-image"


@pytest.fixture
def fake():
    fake = FakeFal(KEY)
    yield fake
    fake.close()


def settings(fake, storage_dir, **more) -> dict:
    """The app's settings against ``fake``, with fast polling and retries."""
    return {
        "TESTING": True, "STORAGE_DIR": str(storage_dir), "GENERATION_PROVIDER": "fal",
        "FAL_QUEUE_BASE": fake.origin, "FAL_KEY": KEY, "FAL_REST_BASE": fake.origin,
        "FAL_SCHEMA_URL": fake.origin + "/api/openapi/queue/openapi.json?endpoint_id={model}",
        "ALLOWED_RESULT_ORIGINS": [fake.cdn.origin],
        **fast_provider_settings(storage_dir), **more}


@pytest.fixture
def app(fake, storage_dir):
    return create_app(settings(fake, storage_dir))


def test_submit_follow_the_queue_then_read_the_response(client, fake, records, storage_dir):
    fake.polls_before_done = 2
    response = client.post(URL, json={"prompt": "a heron", "aspectRatio": "16:9", "seed": 9})
    assert response.status_code == 200, response.get_json()
    [submit] = fake.made("POST")
    assert submit["path"] == "/fal-ai/flux/schnell"
    assert submit["headers"]["Authorization"] == f"Key {KEY}"
    assert submit["json"] == {"prompt": "a heron", "image_size": "landscape_16_9", "seed": 9,
                              "num_images": 1, "output_format": "jpeg"}  # raw, not wrapped
    assert len(fake.made("GET", "/fal-ai/flux/requests/job0/status")) == 3
    assert [r["path"] for r in fake.made("GET", "/requests/job0")][-1] == "/fal-ai/flux/requests/job0"
    [record] = records()
    base = f"{fake.origin}/fal-ai/flux/requests/job0"
    provider = {k: v for k, v in record["provider"].items() if k != "deadlineAt"}  # on_job's
    assert provider == {"name": "fal", "model": "fal-ai/flux/schnell", "requestId": "job0",
                                  "status": "COMPLETED", "inferenceTime": 0.8,
                                  "statusUrl": f"{base}/status", "responseUrl": base,
                                  "cancelUrl": f"{base}/cancel"}
    assert (storage_dir / record["resultFile"]).read_bytes() == fake.files["out.png"][0]
    assert "Authorization" not in fake.made("GET", "/delivery/")[0]["headers"]


def test_an_error_in_the_response_is_clear(client, fake, records):
    fake.result_error = (422, {"detail": [{"loc": ["body", "image_size"], "msg": "not a valid size",
                                           "type": "value_error"}]})
    response = client.post(URL, json={"prompt": "a heron"})
    assert response.status_code == 400
    assert response.get_json()["error"] == \
        "fal.ai refused the input (422 Unprocessable Entity): image_size: not a valid size"
    assert records()[0]["status"] == "failed"


def test_a_bad_key(client, fake):
    fake.token = "another"
    response = client.post(URL, json={"prompt": "a heron"})
    assert response.status_code == 502
    assert response.get_json()["error"] == \
        "fal.ai rejected the API token (401 Unauthorized): check FAL_KEY: Invalid Key"


def test_429_on_submit_then_success(client, fake):
    fake.create_answers = [(429, {"detail": "Too many requests"}, {"Retry-After": "0"})]
    assert client.post(URL, json={"prompt": "a heron"}).status_code == 200
    assert len(fake.made("POST")) == 2


def test_our_deadline_cancels_the_request(client, fake, app):
    app.config["PROVIDER_IMAGE_DEADLINE"] = 0.3
    fake.never_finish = True
    response = client.post(URL, json={"prompt": "a heron"})
    assert response.status_code == 504
    [cancel] = fake.made("PUT")
    assert cancel["path"] == "/fal-ai/flux/requests/job0/cancel"
    assert fake.jobs["job0"]["canceled"]


@pytest.mark.parametrize("url, op_type, count, fields, frames", CASES, ids=IDS)
def test_every_route_through_fal(client, fake, records, url, op_type, count, fields, frames):
    for model in ("fal-ai/wan/v2.2-a14b/text-to-video", "fal-ai/wan/v2.2-a14b/image-to-video",
                  "fal-ai/kling-video/v2.1/pro/image-to-video"):
        fake.outputs_by_model[model] = ["clip.mp4"]
    response = send(client, url, fields, images(count), "json")
    assert response.status_code == 200, response.get_json()
    record = {r["operationId"]: r for r in records()}[response.get_json()["operationId"]]
    assert record["operationType"] == op_type and record["provider"]["name"] == "fal"
    assert record["outputs"][0]["contentType"] == ("video/mp4" if frames else "image/png")
    submit = fake.made("POST")[0]["json"]
    if op_type == "image_to_video_transition":
        assert submit["image_url"].startswith("data:image/png") and submit["tail_image_url"]
    if op_type == "style_transfer":
        assert len(submit["image_urls"]) == 2 and submit["prompt"].startswith("Image 1 is the content.")


def test_the_key_never_lands_in_a_record_or_log(client, fake, storage_dir, caplog):
    with caplog.at_level(logging.DEBUG):
        client.post(URL, json={"prompt": "a heron", "falKey": KEY})
    assert KEY not in caplog.text
    assert not any(KEY in p.read_text() for p in storage_dir.glob("*.json"))
