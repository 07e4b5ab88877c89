"""Every documented output shape is kept byte for byte; a lost download keeps the way back."""

import base64

import pytest

from generation_studio.errors import ProviderError
from generation_studio.providers import Task

from .conftest import hosted_app
from .fakes import HTML


def provider(fake, storage_dir, **settings):
    return hosted_app(fake, storage_dir, **settings).extensions["generation_provider"]



def stored(result) -> list[bytes]:
    return [f if isinstance(f, bytes) else f.read_bytes() for f in result.files]


@pytest.mark.parametrize("shape, count", [("string", 1), ("list", 1), ("list", 2), ("object", 1),
                                          ("object", 2), ("objects", 2), ("data", 1), ("data", 2)])
def test_every_replicate_output_shape_is_stored(replicate, storage_dir, shape, count):
    replicate.outputs = ["out.png", "out2.png"][:count]
    replicate.output_shape = shape
    result = provider(replicate, storage_dir).run(Task("text_to_image", "a fox"))
    assert stored(result) == [replicate.files[n][0] for n in replicate.outputs]
    links = [f"{replicate.cdn.origin}/delivery/{n}" for n in replicate.outputs]
    assert result.urls == ([] if shape == "data" else links)  # data URIs are kept as files


@pytest.mark.parametrize("shape", ["images", "image", "data"])
def test_every_fal_output_shape_is_stored(fal, storage_dir, shape):
    fal.outputs, fal.output_shape = ["out.png", "out2.png"], shape
    result = provider(fal, storage_dir).run(Task("text_to_image", "a heron"))
    expected = ["out.png"] if shape == "image" else ["out.png", "out2.png"]
    assert stored(result) == [fal.files[n][0] for n in expected]


def test_a_data_uri_is_never_echoed_into_a_message(replicate, storage_dir):
    replicate.files["page.html"] = (HTML * 2000, "text/html")
    replicate.outputs, replicate.output_shape = ["page.html"], "data"
    replicate.final_status, replicate.error = "failed", "bad output " + replicate.data_uri("x/page.html")
    with pytest.raises(ProviderError) as failure:
        provider(replicate, storage_dir).run(Task("text_to_image", "a fox"))
    message = failure.value.message
    assert "base64" not in message and len(message) <= 400
    assert message.startswith("Replicate prediction job0 failed: bad output data:… (")


def test_a_refused_data_uri_output_names_no_data(replicate, storage_dir):
    replicate.outputs, replicate.output_shape = ["page.html"], "data"
    with pytest.raises(ProviderError) as failure:
        provider(replicate, storage_dir).run(Task("text_to_image", "a fox"))
    assert failure.value.message == "The result is not an image (its bytes look like text/html)"
    assert failure.value.details["predictionId"] == "job0"


@pytest.mark.parametrize("which", ["replicate", "fal"])
def test_a_failed_download_keeps_the_providers_url_and_the_job(which, replicate, fal, storage_dir):
    fake = replicate if which == "replicate" else fal
    fake.outputs = ["out.png", "missing.png"]
    with pytest.raises(ProviderError) as failure:
        provider(fake, storage_dir).run(Task("text_to_image", "a fox"))
    details = failure.value.details
    links = [f"{fake.cdn.origin}/delivery/out.png", f"{fake.cdn.origin}/delivery/missing.png"]
    assert details["resultUrls"] == links
    assert details["predictionId" if which == "replicate" else "requestId"] == "job0"
    assert details["status"] in ("succeeded", "COMPLETED")
    assert ("1 hour" if which == "replicate" else "30 days") in details["resultKeptFor"]
    assert failure.value.message == ("The result could not be downloaded: its host answered 404; "
                                     f"the provider keeps it at {links[1]} for "
                                     f"{details['resultKeptFor']}")
    assert [p.name for p in storage_dir.iterdir() if p.name.startswith(".download")] == []


def test_a_download_is_tried_again_while_the_cdn_fails(replicate, storage_dir):
    replicate.cdn.failures["out.png"] = [503, 502]
    result = provider(replicate, storage_dir).run(Task("text_to_image", "a fox"))
    assert stored(result) == [replicate.files["out.png"][0]]
    assert len(replicate.made("GET", "/delivery/out.png")) == 3


def test_a_fal_validation_error_names_the_studios_field(fal, storage_dir):
    fal.result_error = (422, {"detail": [{"loc": ["body", "image_size"], "msg": "not a valid size",
                                          "type": "value_error"}]})
    with pytest.raises(ProviderError) as failure:
        provider(fal, storage_dir).run(Task("text_to_image", "a heron"))
    assert failure.value.status == 400 and failure.value.field == "aspectRatio"
    assert failure.value.message == ("fal.ai refused the input (422 Unprocessable Entity): "
                                     "image_size: not a valid size")
    assert failure.value.details["requestId"] == "job0"


def test_a_replicate_problem_detail_names_the_field(replicate, storage_dir):
    replicate.create_answers = [(422, {
        "title": "Input validation failed", "status": 422,
        "detail": "- input.seed: Must be less than or equal to 100\n",
        "invalid_fields": [{"type": "less_than_equal", "field": "input.seed",
                            "description": "Must be less than or equal to 100"}]}, {})]
    with pytest.raises(ProviderError) as failure:
        provider(replicate, storage_dir).run(Task("text_to_image", "a fox", {"seed": 500}))
    assert failure.value.status == 400 and failure.value.field == "seed"
    assert "input.seed: Must be less than or equal to 100" in failure.value.message


def test_an_inline_result_over_the_size_cap_is_refused(replicate, storage_dir):
    replicate.output_shape = "data"
    with pytest.raises(ProviderError) as failure:
        provider(replicate, storage_dir, MAX_RESULT_BYTES=100).run(Task("text_to_image", "a fox"))
    assert "over the limit of 100 bytes (MAX_RESULT_BYTES)" in failure.value.message


def test_data_uri_outputs_are_decoded_exactly(replicate, storage_dir):
    data = replicate.files["out.png"][0]
    replicate.outputs = [f"data:image/png;base64,{base64.b64encode(data).decode()}"]
    result = provider(replicate, storage_dir).run(Task("text_to_image", "a fox"))
    assert stored(result) == [data] and result.urls == []
