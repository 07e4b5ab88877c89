"""Providers and result hosts that misbehave: a host that drips bytes or
stalls is stopped by the operation's deadline (the whole download, not each
read); a result that is an image bomb is refused; an answer that is not what
the API promises is a 502 quoting it, cut short."""

import socket
import threading
import time

import pytest
import requests

from generation_studio.errors import ProviderError
from generation_studio.providers import downloads
from generation_studio.providers.http import ApiClient, Deadline

from .conftest import png_bytes
from .fakes import FakeReplicate
from .test_image_gate import BOMBS
from .test_replicate import TOKEN, settings


class SlowHost:
    """A loopback HTTP host that sends headers, then ``body`` one byte every
    ``every`` seconds (never, when ``every`` is None)."""

    def __init__(self, body: bytes, every: float | None):
        self.body, self.every = body, every
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/out.png"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(self.body))
            try:
                for byte in self.body:
                    if self.every is None:
                        time.sleep(30)
                    time.sleep(self.every or 0)
                    conn.sendall(bytes([byte]))
            except OSError:
                pass  # the client hung up: what the test wants

    def close(self):
        self.listener.close()


class Store:
    def __init__(self, folder):
        self.folder = folder

    def temp_file(self):
        return self.folder / f"download-{time.monotonic_ns()}.tmp"


def config(host: SlowHost, **more) -> dict:
    return {"ALLOWED_RESULT_ORIGINS": [host.url.rsplit("/", 1)[0]], "MAX_RESULT_BYTES": 10**8,
            "PROVIDER_HTTP_TIMEOUT": 30, "PROVIDER_IMAGE_DEADLINE": 300, **more}


@pytest.mark.parametrize("every", [0.2, None], ids=["drip", "stall"])
def test_a_slow_host_ends_as_a_clear_failure_within_the_deadline(tmp_path, every):
    host = SlowHost(png_bytes((64, 64), pattern=True), every)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as failed:
            downloads.download(host.url, Store(tmp_path), config(host), "image",
                               deadline=Deadline(1.0))
    finally:
        host.close()
    assert time.monotonic() - started < 1.6
    assert failed.value.status == 504
    assert failed.value.message == ("The result's download did not finish within the "
                                    "operation's deadline (1 s); it was stopped")
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


def test_without_a_deadline_given_the_kind_s_deadline_bounds_the_download(tmp_path):
    host = SlowHost(png_bytes((64, 64), pattern=True), 0.2)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as failed:
            downloads.download(host.url, Store(tmp_path),
                               config(host, PROVIDER_IMAGE_DEADLINE=1), "image")
    finally:
        host.close()
    assert time.monotonic() - started < 1.6 and failed.value.status == 504


def test_an_image_bomb_result_is_refused(tmp_path):
    host = SlowHost(BOMBS["pixels"][0](), 0)
    try:
        with pytest.raises(ProviderError) as failed:
            downloads.download(host.url, Store(tmp_path), config(host), "image")
    finally:
        host.close()
    assert failed.value.message == ("The result is 10000x10000 = 100,000,000 pixels; the limit "
                                    "is 40,000,000 pixels (MAX_IMAGE_PIXELS)")
    assert failed.value.status == 502 and list(tmp_path.iterdir()) == []


# Answers that are not what the API promises ---------------------------------------------
@pytest.fixture
def api():
    fake = FakeReplicate(TOKEN)
    yield fake, ApiClient("Replicate", f"{fake.origin}/v1", f"Bearer {TOKEN}", TOKEN,
                          "REPLICATE_API_TOKEN", {"PROVIDER_HTTP_TIMEOUT": 5})
    fake.close()


def test_a_missing_key_in_an_answer_is_a_502_quoting_it(api):
    fake, client = api
    answer = client.call("GET", f"{fake.origin}/v1/webhooks/default/secret")
    with pytest.raises(ProviderError) as failed:
        answer["urls"]["get"]
    assert failed.value.status == 502
    assert failed.value.message == (
        f"Replicate answered without 'urls', which it should give: "
        f"{{\"key\": \"{fake.signing_secret}\"}}")


def test_an_answer_that_is_not_json_is_a_502_quoting_it_cut_short(api, monkeypatch):
    fake, client = api
    page = "<html>" + "Bad gateway " * 100 + "</html>"
    monkeypatch.setattr(requests.Session, "request",
                        lambda *a, **k: _response(200, page.encode()))
    with pytest.raises(ProviderError) as failed:
        client.call("GET", f"{fake.origin}/v1/predictions/x")
    assert failed.value.status == 502
    assert failed.value.message.startswith(
        "Replicate answered 200 with something that is not a JSON object: <html>Bad gateway")
    assert len(failed.value.message) < 300 and failed.value.message.endswith("…")


def _response(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code, response._content = status, body
    return response


def test_a_prediction_of_the_wrong_shape_fails_as_a_502(fake_app_client):
    fake, client = fake_app_client
    fake_public = fake._public
    fake._public = lambda pid: {**fake_public(pid), "urls": "not an object"}
    response = client.post("/api/generate/text-to-image", json={"prompt": "a fox"})
    assert response.status_code == 502, response.get_json()
    assert response.get_json()["error"].startswith("Replicate answered")


@pytest.fixture
def fake_app_client(storage_dir):
    from generation_studio import create_app
    fake = FakeReplicate(TOKEN)
    app = create_app(settings(fake, storage_dir))
    yield fake, app.test_client()
    app.extensions["jobs"].stop_workers()
    fake.close()
