"""Only what the model accepts is sent: contracts checked first, choices mapped and said."""

import io
import json

import pytest

from generation_studio.providers import Task
from generation_studio.providers.errors import InputRefused

from .conftest import hosted_app, png_bytes

URL = "/api/generate/text-to-image"


def provider(fake, storage_dir, **settings):
    return hosted_app(fake, storage_dir, **settings).extensions["generation_provider"]


@pytest.mark.parametrize("which, fields, field, words", [
    ("replicate", {"guidance": 12}, "guidance",
     ("guidance 12 is not accepted by black-forest-labs/flux-dev: its input guidance takes a "
      "number from 0 to 10; nothing was sent")),
    ("fal", {"guidance": 0.5}, "guidance",
     ("guidance 0.5 is not accepted by fal-ai/flux/dev: its input guidance_scale takes a number "
      "from 1 to 20; nothing was sent")),
])
def test_a_value_out_of_the_models_range_is_a_400_before_any_call(
        which, fields, field, words, replicate, fal, storage_dir, records):
    fake = replicate if which == "replicate" else fal
    app = hosted_app(fake, storage_dir)
    response = app.test_client().post(URL, json={"prompt": "a fox", **fields})
    assert response.status_code == 400 and response.get_json()["error"] == words
    assert records()[0]["httpStatus"] == 400
    with pytest.raises(InputRefused) as refused:
        app.extensions["generation_provider"].run(Task("text_to_image", "a fox", fields))
    assert refused.value.field == field and refused.value.status == 400
    assert fake.made("POST") == []  # nothing billed


def test_fal_img_to_img_strength_zero_is_refused(fal, storage_dir):
    with pytest.raises(InputRefused) as refused:
        provider(fal, storage_dir).run(Task("img_to_img", "a fox", {"strength": 0},
                                            sources=[png_bytes()]))
    assert refused.value.field == "strength" and "from 0.01 to 1" in refused.value.message
    assert fal.made("POST") == []


def test_a_prompt_longer_than_kling_takes_is_refused(fal, storage_dir):
    task = Task("image_to_video_transition", "x" * 3000, {"duration": 5, "fps": 8},
                sources=[png_bytes(), png_bytes()])
    with pytest.raises(InputRefused) as refused:
        provider(fal, storage_dir).run(task)
    assert "text of at most 2,500 characters" in refused.value.message
    assert fal.made("POST") == []


@pytest.mark.parametrize("asked, sent", [("3:4", "9:16"), ("21:9", "16:9"), ("1:1", "1:1")])
def test_the_nearest_aspect_ratio_the_model_takes_is_sent(fal, storage_dir, asked, sent):
    fal.outputs = ["clip.mp4"]
    result = provider(fal, storage_dir).run(
        Task("text_to_video", "waves", {"aspectRatio": asked, "duration": 5, "fps": 16}))
    [submit] = fal.made("POST", "/fal-ai/wan")
    assert submit["json"]["aspect_ratio"] == sent
    assert len(result.warnings) == (asked != sent)


def test_fal_wan_gets_the_nearest_aspect_ratio_and_says_so(fal, storage_dir):
    fal.outputs = ["clip.mp4"]
    result = provider(fal, storage_dir).run(
        Task("text_to_video", "waves", {"aspectRatio": "4:3", "duration": 5, "fps": 16}))
    [submit] = fal.made("POST", "/fal-ai/wan")
    assert submit["json"]["aspect_ratio"] == "16:9"
    assert result.warnings == [("aspectRatio: aspect_ratio 4:3 mapped to 16:9 for "
                                "fal-ai/wan/v2.2-a14b/text-to-video, which takes one of 16:9, 9:16, 1:1")]


def test_frames_and_rate_are_fitted_to_the_model_with_a_warning(replicate, storage_dir):
    replicate.outputs = ["clip.mp4"]
    result = provider(replicate, storage_dir).run(
        Task("text_to_video", "waves", {"aspectRatio": "16:9", "duration": 2, "fps": 3}))
    [create] = replicate.made("POST", "/predictions")
    assert create["json"]["input"]["num_frames"] == 81
    assert create["json"]["input"]["frames_per_second"] == 5
    assert any(w.startswith("duration: num_frames 6 mapped to 81") for w in result.warnings)
    assert any(w.startswith("fps: frames_per_second 3 mapped to 5") for w in result.warnings)


@pytest.mark.parametrize("which, operation, model_format", [
    ("fal", "text_to_image", "jpeg"), ("replicate", "image_edit_single", "jpg")])
def test_webp_on_a_model_without_it_is_mapped_and_said(which, operation, model_format, replicate,
                                                       fal, storage_dir):
    fake = replicate if which == "replicate" else fal
    sources = [png_bytes()] if operation != "text_to_image" else []
    result = provider(fake, storage_dir).run(Task(operation, "a fox", {"outputFormat": "webp"},
                                                  sources=sources))
    [sent] = [r["json"] for r in fake.made("POST") if r["json"]]
    assert (sent.get("input") or sent)["output_format"] == model_format
    assert any(w.startswith(f"outputFormat: output_format webp mapped to {model_format}")
               for w in result.warnings)


def test_an_output_in_another_format_than_asked_is_said(replicate, storage_dir):
    result = provider(replicate, storage_dir).run(Task("text_to_image", "a fox",
                                                       {"outputFormat": "jpg"}))
    assert result.warnings == ["outputFormat: black-forest-labs/flux-schnell answered PNG, not JPG"]


def test_a_user_model_schema_is_fetched_once_and_cached(replicate, storage_dir):
    replicate.schemas["someone/strict"] = {"required": ["prompt"], "properties": {
        "prompt": {"type": "string"}, "guidance": {"type": "number", "minimum": 0, "maximum": 5}}}
    models = {"text_to_image_guided": "someone/strict", "text_to_image": "someone/strict"}
    client = hosted_app(replicate, storage_dir, REPLICATE_MODELS=models).test_client()
    refused = client.post(URL, json={"prompt": "a fox", "guidance": 7})
    assert refused.status_code == 400 and "from 0 to 5" in refused.get_json()["error"]
    assert client.post(URL, json={"prompt": "a fox", "guidance": 4}).status_code == 200
    assert len(replicate.made("GET", "/v1/models/someone/strict")) == 1
    cached = storage_dir.parent / "schemas" / "replicate" / "someone__strict.json"
    assert json.loads(cached.read_text())["properties"]["guidance"]["maximum"] == 5
    again = hosted_app(replicate, storage_dir, REPLICATE_MODELS=models).test_client()
    assert again.post(URL, json={"prompt": "a fox", "guidance": 9}).status_code == 400
    assert len(replicate.made("GET", "/v1/models/someone/strict")) == 1  # read from the cache
    [create] = replicate.made("POST", "/predictions")
    assert create["json"]["input"] == {"prompt": "a fox", "guidance": 4}  # no unknown inputs


def test_a_fal_user_model_schema_comes_from_its_openapi(fal, storage_dir):
    fal.schemas["someone/app/edit"] = {"required": ["prompt"], "properties": {
        "prompt": {"type": "string"}, "seed": {"type": "integer", "maximum": 100}}}
    result_app = hosted_app(fal, storage_dir, FAL_MODELS={"text_to_image": "someone/app/edit"})
    prov = result_app.extensions["generation_provider"]
    with pytest.raises(InputRefused):
        prov.run(Task("text_to_image", "a heron", {"seed": 500}))
    result = prov.run(Task("text_to_image", "a heron", {"seed": 5}))
    [openapi] = fal.made("GET", "/api/openapi/queue/openapi.json")
    assert openapi["args"] == {"endpoint_id": "someone/app/edit"}
    assert "Authorization" not in openapi["headers"]
    [submit] = fal.made("POST", "/someone/app/edit")
    assert submit["json"] == {"prompt": "a heron", "seed": 5}
    assert "aspectRatio: someone/app/edit has no input image_size; it was not sent" in result.warnings


def test_no_schema_reachable_sends_as_today_and_says_so(fal, storage_dir):
    fal.schemas["someone/other"] = {"properties": {"prompt": {"type": "string"}, "image_size": {},
                                                   "num_images": {}, "output_format": {}}}
    prov = provider(fal, storage_dir, FAL_MODELS={"text_to_image": "someone/other"},
                    FAL_SCHEMA_URL="http://127.0.0.1:9/openapi.json?endpoint_id={model}")
    result = prov.run(Task("text_to_image", "a heron"))
    assert result.warnings[0] == ("The inputs of someone/other were not checked: its schema could "
                                  "not be read, so the request was sent as it is")
    assert len(fal.made("POST", "/someone/other")) == 1


def test_large_inputs_go_through_fal_storage(fal, storage_dir):
    large = png_bytes((400, 400), pattern=True) + b"\0" * (300 * 1024)
    small = png_bytes((16, 16), pattern=True)
    prov = provider(fal, storage_dir)
    prov.run(Task("style_transfer", "", {}, sources=[large, small]))
    [initiate] = fal.made("POST", "/storage/upload/initiate")
    assert initiate["args"] == {"storage_type": "fal-cdn-v3"}
    assert initiate["json"] == {"content_type": "image/png", "file_name": "input.png"}
    [put] = fal.made("PUT", "/upload/")
    assert put["body"] == large and "Authorization" not in put["headers"]
    [submit] = fal.made("POST", "/fal-ai/nano-banana/edit")
    first, second = submit["json"]["image_urls"]
    assert first.startswith(fal.cdn.origin + "/delivery/upload-") and second.startswith("data:")


def test_fal_storage_and_schemas_default_to_the_queues_origin_when_it_is_not_fals(
        fal, storage_dir):
    prov = provider(fal, storage_dir, FAL_REST_BASE=None, FAL_SCHEMA_URL=None)
    assert prov.rest.base == fal.origin
    assert prov.schema_url == fal.origin + "/api/openapi/queue/openapi.json?endpoint_id={model}"
    official = provider(fal, storage_dir, FAL_QUEUE_BASE="https://queue.fal.run",
                        FAL_REST_BASE=None, FAL_SCHEMA_URL=None)
    assert official.rest.base == "https://rest.fal.ai"
    assert official.schema_url.startswith("https://fal.ai/api/openapi/queue/openapi.json?")


def test_a_large_input_on_replicate_uses_the_files_api(replicate, storage_dir):
    large = png_bytes((400, 400), pattern=True) + b"\0" * (300 * 1024)
    data = {"prompt": "a fox", "strength": 0.5, "image": (io.BytesIO(large), "l.png")}
    client = hosted_app(replicate, storage_dir).test_client()
    assert client.post("/api/generate/img-to-img", data=data,
                       content_type="multipart/form-data").status_code == 200
    [create] = replicate.made("POST", "/predictions")
    assert create["json"]["input"]["image"] == f"{replicate.origin}/v1/files/job0"


@pytest.mark.parametrize("provider_name", ["replicate", "fal"])
def test_published_schemas_read_back_as_the_written_contracts(provider_name):
    """Reading a published OpenAPI document (Cog's enums as $ref components,
    fal's request bodies) gives back exactly the contract written down."""
    from generation_studio.providers.schemas import flatten

    from .fakes import cog_openapi, fal_openapi, published
    for model, contract in published(provider_name).items():
        if provider_name == "replicate":
            doc = cog_openapi(contract)
            schema = doc["components"]["schemas"]["Input"]
        else:
            doc = fal_openapi(model, contract)
            schema = doc["paths"][f"/{model}"]["post"]["requestBody"]["content"][
                "application/json"]["schema"]
        read = flatten(doc, schema)
        assert read["required"] == contract["required"], model
        assert read["properties"] == contract["properties"], model
