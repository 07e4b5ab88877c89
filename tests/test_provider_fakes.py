"""The fakes refuse what the real APIs refuse, so the provider tests can catch a bad request."""

import base64

import pytest
import requests

from .conftest import png_bytes
from .fakes import FakeFal, FakeReplicate

TOKEN = "r8_fake"
KEY = "id:secret"


@pytest.fixture
def replicate():
    fake = FakeReplicate(TOKEN)
    fake.never_finish = True
    yield fake
    fake.close()


@pytest.fixture
def fal():
    fake = FakeFal(KEY)
    fake.never_finish = True
    yield fake
    fake.close()


def create(fake, inputs=None, headers=None, auth=True, model="black-forest-labs/flux-schnell"):
    return requests.post(f"{fake.origin}/v1/models/{model}/predictions",
                         json={"input": inputs or {"prompt": "a fox"}},
                         headers={**({"Authorization": f"Bearer {TOKEN}"} if auth else {}),
                                  **(headers or {})}, timeout=5)


def test_replicate_wants_the_token_on_every_call(replicate):
    assert create(replicate, auth=False).status_code == 401
    assert create(replicate).status_code == 201
    for method, path in [("GET", "/v1/predictions/job0"), ("POST", "/v1/predictions/job0/cancel"),
                         ("POST", "/v1/files"), ("GET", "/v1/models/black-forest-labs/flux-dev")]:
        answer = requests.request(method, replicate.origin + path, timeout=5)
        assert answer.status_code == 401, path
        wrong = requests.request(method, replicate.origin + path, timeout=5,
                                 headers={"Authorization": "Bearer r8_other"})
        assert wrong.status_code == 401, path


@pytest.mark.parametrize("headers", [{"Cancel-After": "2s"}, {"Cancel-After": "4.9s"},
                                     {"Cancel-After": "soon"}, {"Prefer": "wait=61"},
                                     {"Prefer": "wait=0"}])
def test_replicate_refuses_bad_headers(replicate, headers):
    assert create(replicate, headers=headers).status_code == 400
    assert create(replicate, headers={"Cancel-After": "5s", "Prefer": "wait=60"}).status_code == 201


@pytest.mark.parametrize("inputs, field", [
    ({"prompt": "a fox", "style": "oil"}, "input.style"),
    ({"prompt": "a fox", "aspect_ratio": "5:3"}, "input.aspect_ratio"),
    ({"prompt": "a fox", "num_outputs": 5}, "input.num_outputs"),
    ({"prompt": "a fox", "seed": 1.5}, "input.seed"),
    ({"aspect_ratio": "1:1"}, "input.prompt"),
])
def test_replicate_refuses_inputs_outside_the_published_schema(replicate, inputs, field):
    answer = create(replicate, inputs)
    assert answer.status_code == 422
    assert [f["field"] for f in answer.json()["invalid_fields"]] == [field]


def test_replicate_refuses_guidance_over_ten_on_flux_dev(replicate):
    answer = create(replicate, {"prompt": "a fox", "guidance": 12}, model="black-forest-labs/flux-dev")
    assert answer.status_code == 422 and "less than or equal to 10" in answer.json()["detail"]


def test_replicate_refuses_a_large_inline_file(replicate):
    large = "data:image/png;base64," + base64.b64encode(b"\0" * 300 * 1024).decode()
    answer = create(replicate, {"prompt": "x", "image": large}, model="black-forest-labs/flux-dev")
    assert answer.status_code == 422 and "upload the file first" in answer.json()["detail"]


def test_replicate_honours_cancel_after_itself(replicate):
    assert create(replicate, headers={"Cancel-After": "5s"}).status_code == 201
    replicate.predictions["job0"]["created"] -= 6
    status = requests.get(f"{replicate.origin}/v1/predictions/job0", timeout=5,
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()["status"]
    assert status == "aborted"


def submit(fal, model="fal-ai/flux/schnell", body=None, auth=True):
    return requests.post(f"{fal.origin}/{model}", json=body or {"prompt": "a heron"}, timeout=5,
                         headers={"Authorization": f"Key {KEY}"} if auth else {})


def test_fal_wants_the_key_on_every_call(fal):
    assert submit(fal, auth=False).status_code == 401
    assert submit(fal).status_code == 200
    base = f"{fal.origin}/fal-ai/flux/requests/job0"
    for method, url in [("GET", f"{base}/status"), ("GET", base), ("PUT", f"{base}/cancel"),
                        ("POST", f"{fal.origin}/storage/upload/initiate")]:
        assert requests.request(method, url, timeout=5).status_code == 401, url


def test_fal_status_lives_on_the_owner_and_app_only(fal):
    submit(fal, "fal-ai/flux/dev")
    auth = {"Authorization": f"Key {KEY}"}
    good = requests.get(f"{fal.origin}/fal-ai/flux/requests/job0/status", headers=auth, timeout=5)
    wrong = requests.get(f"{fal.origin}/fal-ai/flux/dev/requests/job0/status", headers=auth, timeout=5)
    assert good.status_code == 202 and wrong.status_code == 404


@pytest.mark.parametrize("model, body, field", [
    ("fal-ai/wan/v2.2-a14b/text-to-video", {"prompt": "x", "aspect_ratio": "4:3"}, "aspect_ratio"),
    ("fal-ai/flux/dev", {"prompt": "x", "guidance_scale": 0.5}, "guidance_scale"),
    ("fal-ai/flux/schnell", {"prompt": "x", "output_format": "webp"}, "output_format"),
    ("fal-ai/flux/schnell", {"prompt": "x", "aspect_ratio": "1:1"}, "aspect_ratio"),
])
def test_fal_refuses_inputs_outside_the_published_schema(fal, model, body, field):
    answer = submit(fal, model, body)
    assert answer.status_code == 422
    assert [d["loc"] for d in answer.json()["detail"]] == [["body", field]]


def test_the_cdn_is_another_origin_and_takes_no_credentials_on_uploads(fal):
    auth = {"Authorization": f"Key {KEY}"}
    target = requests.post(f"{fal.origin}/storage/upload/initiate", headers=auth, timeout=5,
                           params={"storage_type": "fal-cdn-v3"},
                           json={"content_type": "image/png", "file_name": "a.png"}).json()
    assert not target["upload_url"].startswith(fal.origin)
    assert requests.put(target["upload_url"], data=png_bytes(), headers=auth, timeout=5).status_code == 400
    assert requests.put(target["upload_url"], data=png_bytes(), timeout=5).status_code == 200
    assert requests.get(target["file_url"], timeout=5).content == png_bytes()
