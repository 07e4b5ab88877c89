"""The replicate provider against a loopback fake of Replicate's HTTP API."""

import io
import json
import logging

import pytest

from generation_studio import create_app
from generation_studio.errors import ProviderError
from generation_studio.providers import Task

from .conftest import fast_provider_settings, png_bytes, stored_names
from .fakes import FakeReplicate
from .test_routes import CASES, IDS, images, send

TOKEN = "r8_TEST_s3cr3t_T0KEN_abcdef"
URL = "/api/generate/text-to-image"


@pytest.fixture
def fake():
    fake = FakeReplicate(TOKEN)
    yield fake
    fake.close()


def settings(fake, storage_dir, **more) -> dict:
    """The app's settings against ``fake``, with fast polling and retries."""
    return {
        "TESTING": True, "STORAGE_DIR": str(storage_dir), "GENERATION_PROVIDER": "replicate",
        "REPLICATE_API_BASE": f"{fake.origin}/v1", "REPLICATE_API_TOKEN": TOKEN,
        "REPLICATE_WAIT_SECONDS": 5, "ALLOWED_RESULT_ORIGINS": [fake.cdn.origin],
        **fast_provider_settings(storage_dir), **more}


@pytest.fixture
def app(fake, storage_dir):
    return create_app(settings(fake, storage_dir))


def test_a_prediction_that_finishes_inside_the_wait(client, fake, records, storage_dir):
    response = client.post(URL, json={"prompt": "a fox", "aspectRatio": "16:9", "seed": 3})
    assert response.status_code == 200, response.get_json()
    [create] = fake.made("POST", "/predictions")
    assert create["path"] == "/v1/models/black-forest-labs/flux-schnell/predictions"
    assert create["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert create["headers"]["Prefer"] == "wait=5"
    assert create["headers"]["Cancel-After"] == "5s"
    assert create["json"] == {"input": {"prompt": "a fox", "aspect_ratio": "16:9", "seed": 3,
                                        "output_format": "jpg"}}
    assert not fake.made("GET", "/v1/predictions")  # no poll needed
    [record] = records()
    provider = {k: v for k, v in record["provider"].items() if k != "deadlineAt"}  # on_job's
    assert provider == {"name": "replicate", "model": "black-forest-labs/flux-schnell",
                                  "predictionId": "job0", "version": "v-black-forest-labs-flux-schnell",
                                  "status": "succeeded", "predictTime": 1.25,
                                  "statusUrl": f"{fake.origin}/v1/predictions/job0",
                                  "cancelUrl": f"{fake.origin}/v1/predictions/job0/cancel",
                                  "webUrl": "https://replicate.com/p/job0"}
    assert record["resultUrl"] == f"{fake.cdn.origin}/delivery/out.png"
    assert (storage_dir / record["resultFile"]).read_bytes() == fake.files["out.png"][0]
    [delivery] = fake.made("GET", "/delivery/")
    assert "Authorization" not in delivery["headers"]  # the token never goes to the file host
    body = response.get_json()
    assert body["resultUrl"] == record["resultUrl"] and body["fileUrl"].endswith("_out.png")


def test_guidance_picks_flux_dev(client, fake):
    client.post(URL, json={"prompt": "a fox", "guidance": 3.5})
    [create] = fake.made("POST", "/predictions")
    assert create["path"] == "/v1/models/black-forest-labs/flux-dev/predictions"
    assert create["json"]["input"]["guidance"] == 3.5


def test_a_prediction_that_needs_several_polls(client, fake, records):
    fake.polls_before_done = 3
    assert client.post(URL, json={"prompt": "a fox"}).status_code == 200
    assert len(fake.made("GET", "/v1/predictions/job0")) == 3
    assert records()[0]["status"] == "succeeded"


def test_a_poll_that_fails_with_5xx_is_retried(client, fake):
    fake.polls_before_done = 1
    fake.poll_answers = [(503, {"detail": "busy"}), (502, {"detail": "bad gateway"})]
    assert client.post(URL, json={"prompt": "a fox"}).status_code == 200
    assert len(fake.made("GET", "/v1/predictions/job0")) == 3


def test_a_create_that_fails_with_5xx_is_not_repeated(client, fake, records):
    fake.create_answers = [(500, {"detail": "internal error"}, {})]
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == 502
    assert response.get_json()["error"] == "Replicate answered 500: internal error"
    assert len(fake.made("POST", "/predictions")) == 1
    assert records()[0]["status"] == "failed"


def test_a_create_that_fails_keeps_the_model_and_the_warnings_in_the_record(client, fake,
                                                                           records):
    fake.create_answers = [(500, {"detail": "internal error"}, {})]
    response = client.post("/api/video/text-to-video",
                           json={"prompt": "waves", "duration": 2, "fps": 3})
    assert response.status_code == 502
    [record] = records()
    assert record["status"] == "failed"
    assert record["provider"]["model"] == "wan-video/wan-2.2-t2v-fast"
    assert [w.split(" mapped")[0] for w in record["warnings"]] == [
        "duration: num_frames 6", "fps: frames_per_second 3"]


@pytest.mark.parametrize("final, status, words", [
    ("failed", 502, "Replicate prediction job0 failed: CUDA out of memory"),
    ("canceled", 502, "Replicate prediction job0 canceled"),
    ("aborted", 504, "Replicate prediction job0 aborted"),
])
def test_failed_and_canceled_predictions(client, fake, records, final, status, words):
    fake.final_status, fake.error = final, "CUDA out of memory" if final == "failed" else None
    fake.polls_before_done = 1
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == status and words in response.get_json()["error"]
    [record] = records()
    assert record["status"] == "failed" and words in record["error"]
    assert record["errorType"] == "ProviderError" and record["resultFile"] is None
    # Which prediction it was stays in the record, to look it up at Replicate.
    assert record["provider"]["name"] == "replicate"
    assert record["provider"]["predictionId"] == "job0"


@pytest.mark.parametrize("status, detail, answer, words", [
    (401, "Invalid token", 502,
     "Replicate rejected the API token (401 Unauthorized): check REPLICATE_API_TOKEN"),
    (402, "Monthly spend limit reached", 502, "billing"),
    (404, "The requested model was not found", 502, "does not know this model"),
    (422, "Input validation failed: - input.aspect_ratio: must be one of 1:1, 16:9", 400,
     "Replicate refused the input (422 Unprocessable Entity): Input validation failed"),
])
def test_problem_details_become_clear_errors(client, fake, records, status, detail, answer, words):
    fake.create_answers = [(status, {"title": "Error", "detail": detail, "status": status}, {})]
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == answer
    assert words in response.get_json()["error"]
    assert records()[0]["httpStatus"] == answer


def test_429_then_success_retries_the_create(client, fake):
    fake.create_answers = [(429, {"detail": "Request was throttled", "retry_after": 0.01}, {}),
                           (429, {"detail": "Request was throttled"}, {"Retry-After": "0"})]
    assert client.post(URL, json={"prompt": "a fox"}).status_code == 200
    assert len(fake.made("POST", "/predictions")) == 3


def test_429_every_time_gives_503_with_retry_after(client, app, fake, records):
    fake.create_answers = [(429, {"detail": "throttled"}, {"Retry-After": "7"})] * 8
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == 503
    assert "rate-limiting" in response.get_json()["error"]
    assert len(fake.made("POST", "/predictions")) == 4
    assert records()[0]["httpStatus"] == 503
    # The client is told when to come back, and the record keeps it.
    assert response.headers["Retry-After"] == "7" and records()[0]["retryAfter"] == "7"
    with pytest.raises(ProviderError) as failure:  # what the web layer answers as Retry-After
        app.extensions["generation_provider"].run(Task("text_to_image", "a fox"))
    assert failure.value.status == 503 and failure.value.headers == {"Retry-After": "7"}


def test_our_deadline_cancels_the_prediction(client, fake, app, records):
    app.extensions["generation_provider"].config["PROVIDER_IMAGE_DEADLINE"] = 0.3
    fake.never_finish = True
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == 504
    assert "did not finish black-forest-labs/flux-schnell within 0.3 s" in response.get_json()["error"]
    assert fake.made("POST", "/v1/predictions/job0/cancel")
    assert fake.predictions["job0"]["status"] == "canceled"
    assert records()[0]["status"] == "failed"


def test_list_outputs_are_all_kept(client, fake, records, storage_dir):
    fake.outputs = ["out.png", "out2.png"]
    body = client.post(URL, json={"prompt": "two foxes"}).get_json()
    record = records()[0]
    assert [o["file"] for o in record["outputs"]] == [f"{record['operationId']}_out_0.png",
                                                      f"{record['operationId']}_out_1.png"]
    assert record["resultUrls"] == [f"{fake.cdn.origin}/delivery/out.png",
                                    f"{fake.cdn.origin}/delivery/out2.png"]
    assert (storage_dir / record["outputs"][1]["file"]).read_bytes() == fake.files["out2.png"][0]
    assert len(body["fileUrls"]) == 2


def test_a_single_output_in_a_list(client, fake, records):
    fake.output_as_list = True
    client.post(URL, json={"prompt": "a fox"})
    assert records()[0]["resultFile"].endswith("_out.png")


def _no_leftovers(storage_dir):
    return [n for n in stored_names(storage_dir) if not n.endswith(".json")]


def test_a_result_over_the_size_cap(client, fake, app, records, storage_dir):
    app.config["MAX_RESULT_BYTES"] = 100
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == 502
    assert "over the limit of 100 bytes (MAX_RESULT_BYTES)" in response.get_json()["error"]
    assert _no_leftovers(storage_dir) == []


def test_a_redirect_outside_the_allowed_origins_is_not_followed(client, fake, storage_dir):
    port = fake.cdn.origin.rsplit(":", 1)[1]
    fake.redirects["out.png"] = f"http://localhost:{port}/delivery/out2.png"
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == 502
    assert f"http://localhost:{port}, which is not in ALLOWED_RESULT_ORIGINS" in response.get_json()["error"]
    assert len(fake.made("GET", "/delivery/")) == 1  # the redirect itself, nothing after it
    assert _no_leftovers(storage_dir) == []


def test_a_redirect_inside_the_allowed_origins_is_followed(client, fake, records, storage_dir):
    fake.redirects["out.png"] = "/delivery/out2.png"
    assert client.post(URL, json={"prompt": "a fox"}).status_code == 200
    assert (storage_dir / records()[0]["resultFile"]).read_bytes() == fake.files["out2.png"][0]


def test_an_output_url_on_another_host_is_not_fetched(client, fake):
    fake.outputs = ["http://169.254.169.254/latest/meta-data"]
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == 502
    assert "http://169.254.169.254, which is not in ALLOWED_RESULT_ORIGINS" in response.get_json()["error"]


def test_html_instead_of_an_image_is_refused(client, fake, storage_dir):
    fake.outputs = ["page.html"]
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == 502
    assert response.get_json()["error"] == (
        "The result is not an image (its bytes look like text/html); the provider keeps it at "
        f"{fake.cdn.origin}/delivery/page.html for 1 hour (Replicate deletes API outputs after an hour)")
    assert _no_leftovers(storage_dir) == []


def test_small_inputs_go_inline_and_large_ones_through_files(client, fake):
    small = png_bytes((16, 16), pattern=True)
    large = png_bytes((400, 400), pattern=True) + b"\0" * (300 * 1024)  # a PNG with trailing bytes
    data = {"prompt": "combine", "images": [(io.BytesIO(small), "s.png"), (io.BytesIO(large), "l.png")]}
    assert client.post("/api/edit/image", data=data, content_type="multipart/form-data").status_code == 200
    [upload] = fake.made("POST", "/v1/files")
    assert upload["files"]["content"] == large
    [create] = fake.made("POST", "/predictions")
    assert create["path"] == "/v1/models/google/nano-banana/predictions"
    first, second = create["json"]["input"]["image_input"]
    assert first.startswith("data:image/png;base64,")
    assert second == f"{fake.origin}/v1/files/job0"
    assert create["json"]["input"]["prompt"] == "Images 1 to 2 are the inputs; use them together. combine"


def test_a_versioned_model_uses_the_predictions_endpoint(fake, storage_dir):
    fake.schemas["someone/sdxl"] = {"properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}
    fake.versions["abc123"] = "someone/sdxl"
    app = create_app(settings(fake, storage_dir,
                              REPLICATE_MODELS={"text_to_image": "someone/sdxl:abc123"}))
    assert app.test_client().post(URL, json={"prompt": "x"}).status_code == 200
    [create] = fake.made("POST", "/predictions")
    assert create["path"] == "/v1/predictions"
    assert create["json"]["version"] == "abc123"


MODELS = {
    "img_to_img": "black-forest-labs/flux-dev", "image_edit_single": "black-forest-labs/flux-kontext-pro",
    "image_edit_multiple": "google/nano-banana", "pose_transfer": "google/nano-banana",
    "style_transfer": "google/nano-banana", "text_to_video": "wan-video/wan-2.2-t2v-fast",
    "image_to_video_single": "wan-video/wan-2.2-i2v-a14b",
    "image_to_video_transition": "kwaivgi/kling-v2.1",
}


@pytest.mark.parametrize("url, op_type, count, fields, frames", CASES, ids=IDS)
def test_every_route_through_replicate(client, fake, records, storage_dir, url, op_type, count,
                                       fields, frames):
    for model in ("wan-video/wan-2.2-t2v-fast", "wan-video/wan-2.2-i2v-a14b", "kwaivgi/kling-v2.1"):
        fake.outputs_by_model[model] = ["clip.mp4"]
    fake.polls_before_done = 1
    uploads = images(count)
    response = send(client, url, fields, uploads, "multipart")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    ops = {r["operationId"]: r for r in records()}
    record = ops[body["operationId"]]
    assert record["operationType"] == op_type and record["provider"]["name"] == "replicate"
    assert len(record["inputImages"]) == count
    expected = "video/mp4" if frames else "image/png"
    assert record["outputs"][0]["contentType"] == expected
    creates = [r for r in fake.made("POST", "/predictions") if "gpt-4o-mini" not in r["path"]]
    if op_type in MODELS:
        assert creates[0]["path"] == f"/v1/models/{MODELS[op_type]}/predictions"
    inputs = creates[0]["json"]["input"]
    if op_type == "image_to_video_transition":
        assert inputs["mode"] == "pro" and inputs["start_image"].startswith("data:image/png")
        assert inputs["end_image"].startswith("data:image/png")
    if op_type == "pose_transfer":
        assert inputs["prompt"].startswith("Image 1 is the subject. Image 2 is the pose reference.")
    if op_type == "img_to_img":
        assert inputs["prompt_strength"] == 0.4 and inputs["image"].startswith("data:image/png")
    if op_type == "image_to_video_single" and "img-to-video" in url:
        assert inputs["num_frames"] == 81 and inputs["frames_per_second"] == 5
    if op_type == "edit_then_video":  # the planner answered no JSON: rules, and it says so
        assert "rules used instead" in record["workflowAnalysis"]["fallback"]
        assert [ops[s]["provider"]["model"] for s in record["steps"]] == [
            "black-forest-labs/flux-kontext-pro", "wan-video/wan-2.2-i2v-a14b"]


def test_the_workflow_plan_comes_from_the_language_model(client, fake, records):
    plan = {"type": "generate_then_video", "reason": "the user wants a moving picture",
            "steps": [{"operation": "text_to_image", "prompt": "a red kite", "inputs": []},
                      {"operation": "image_to_video_single", "prompt": "the kite flies",
                       "inputs": ["step:0"]}]}
    fake.llm_answer = "Here is the plan:\n" + json.dumps(plan)
    fake.outputs_by_model["wan-video/wan-2.2-i2v-a14b"] = ["clip.mp4"]
    body = client.post("/api/workflow/execute", json={"prompt": "a kite, flying"}).get_json()
    assert body["operationType"] == "generate_then_video"
    analysis = body["workflowAnalysis"]
    assert analysis["analyzer"] == "replicate:openai/gpt-4o-mini" and "fallback" not in analysis
    [planner] = fake.made("POST", "/v1/models/openai/gpt-4o-mini/predictions")
    assert "generate_then_video" in planner["json"]["input"]["system_prompt"]
    ops = {r["operationId"]: r for r in records()}
    assert [ops[s]["prompt"] for s in body["steps"]] == ["a red kite", "the kite flies"]


def test_a_plan_of_the_wrong_shape_falls_back_to_the_rules(client, fake):
    fake.llm_answer = json.dumps({"type": "edit_image", "steps": [
        {"operation": "image_edit_single", "inputs": ["upload:4"]}]})
    body = client.post("/api/workflow/execute", json={"prompt": "a castle"}).get_json()
    assert body["operationType"] == "generate_image"
    assert "'upload:4' is not an upload" in body["workflowAnalysis"]["fallback"]


def test_the_token_never_lands_in_a_record_a_log_or_a_response(client, fake, storage_dir, caplog):
    fake.create_answers = [(401, {"title": "Unauthenticated", "status": 401,
                                  "detail": f"Invalid token {TOKEN}"}, {})]
    with caplog.at_level(logging.DEBUG):
        failed = client.post(URL, json={"prompt": "a fox", "token": TOKEN, "note": TOKEN})
        ok = client.post(URL, json={"prompt": "a fox"})
    assert failed.status_code == 502 and ok.status_code == 200
    assert "[redacted]" in failed.get_json()["error"]
    for text in [failed.get_data(as_text=True), ok.get_data(as_text=True), caplog.text,
                 *(p.read_text() for p in storage_dir.glob("*.json"))]:
        assert TOKEN not in text


def test_a_missing_token_is_a_clear_error(fake, storage_dir, monkeypatch):
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir), "GENERATION_PROVIDER": "replicate",
                      "REPLICATE_API_BASE": f"{fake.origin}/v1"})
    response = app.test_client().post(URL, json={"prompt": "x"})
    assert response.status_code == 502
    assert "needs an API token: set REPLICATE_API_TOKEN in .env" in response.get_json()["error"]
    assert fake.requests == []


def test_an_answer_that_is_not_json_is_a_clear_error(client, fake):
    fake.create_answers = [(201, "not json at all", {})]
    response = client.post(URL, json={"prompt": "a fox"})
    assert response.status_code == 502
    assert response.get_json()["error"] == \
        'Replicate answered 201 with something that is not a JSON object: "not json at all"'
