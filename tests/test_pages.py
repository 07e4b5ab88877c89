"""The web pages through Flask's test client: negotiation, CSRF, login, thumbnails."""

import re

import pytest

from .conftest import png_bytes

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def csrf(client, url="/admin"):
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_a_native_form_post_is_redirected_to_its_operation(client, records):
    response = client.post("/api/generate/text-to-image", data={"prompt": "a barn"}, headers=HTML)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/history/{records()[0]['operationId']}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "a barn" in page and "text_to_image" in page


def test_a_failed_native_post_goes_to_the_failed_operation(client, records):
    response = client.post("/api/generate/text-to-image", data={"prompt": ""}, headers=HTML)
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "prompt is required" in page and "failed" in page


def test_fetch_and_curl_still_get_json(client):
    for accept in ("*/*", "application/json", None):
        headers = {"Accept": accept} if accept else {}
        response = client.post("/api/generate/text-to-image", data={"prompt": "x"}, headers=headers)
        assert response.is_json and response.get_json()["contentType"] == "image/jpeg"


def test_an_html_error_page_when_nothing_was_recorded(client):
    response = client.get("/history/20990101_aaaaaaaaaaaa", headers=HTML)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Not found" in response.get_data(as_text=True)


def test_studio_has_every_form_with_its_limits(client):
    page = client.get("/").get_data(as_text=True)
    assert page.count('class="op-form"') == 10
    assert 'action="/api/edit/image"' in page and 'data-max="5"' in page
    assert "1 to 30." in page  # the duration's range, from the same constant as the API


def test_run_again_needs_the_csrf_token(client, records):
    op_id = client.post("/api/generate/text-to-image",
                        json={"prompt": "a kite", "seed": 4}).get_json()["operationId"]
    assert client.post(f"/history/{op_id}/rerun").status_code == 400
    response = client.post(f"/history/{op_id}/rerun", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    again = [r for r in records() if r["operationId"] != op_id]
    assert len(again) == 1 and again[0]["prompt"] == "a kite" and again[0]["parameters"] == {"seed": "4"}
    assert response.headers["Location"] == f"/history/{again[0]['operationId']}"


def test_run_again_resends_the_input_images(client, records, storage_dir):
    picture = png_bytes((48, 32), pattern=True)
    first = client.post("/api/edit/image", data={
        "prompt": "blur", "images": [(__import__("io").BytesIO(picture), "p.png")]},
                        content_type="multipart/form-data").get_json()["operationId"]
    client.post(f"/history/{first}/rerun", data={"csrf_token": csrf(client)})
    again = [r for r in records() if r["operationId"] != first][0]
    assert (storage_dir / again["inputImages"][0]["file"]).read_bytes() == picture
    assert again["inputImages"][0]["originalName"] == "p.png"


def test_admin_pages_need_the_login_when_a_token_is_set(client, app):
    app.config["ADMIN_TOKEN"] = "secret-admin"
    assert client.get("/admin").headers["Location"].startswith("/login?next=")
    token = csrf(client, "/login")
    bad = client.post("/login", data={"csrf_token": token, "token": "nope", "next": "/admin"})
    assert bad.status_code == 401
    good = client.post("/login", data={"csrf_token": token, "token": "secret-admin",
                                       "next": "https://evil.example/"})
    assert good.headers["Location"] == "/admin"  # never a redirect off the site
    assert client.get("/admin").status_code == 200


def test_admin_forms_need_the_csrf_token(client, app):
    assert client.post("/admin", data={"action": "cleanup", "older_than": "0d"}).status_code == 400


def test_delete_from_the_page(client, storage_dir):
    op_id = client.post("/api/generate/text-to-image", json={"prompt": "x"}).get_json()["operationId"]
    assert client.get(f"/history/{op_id}/thumb").status_code == 200
    assert (storage_dir / ".thumbs" / f"{op_id}.webp").exists()
    confirm = client.get(f"/history/{op_id}/delete").get_data(as_text=True)
    assert "This cannot be undone" in confirm
    response = client.post(f"/history/{op_id}/delete", data={"csrf_token": csrf(client)})
    assert response.status_code == 303
    assert client.get(f"/api/history/{op_id}").status_code == 404
    assert not (storage_dir / ".thumbs" / f"{op_id}.webp").exists()


def test_thumbnails_are_small_and_made_once(client, storage_dir):
    op_id = client.post("/api/generate/text-to-image", json={"prompt": "x"}).get_json()["operationId"]
    first = client.get(f"/history/{op_id}/thumb")
    assert first.mimetype == "image/webp" and len(first.data) < 30_000
    path = storage_dir / ".thumbs" / f"{op_id}.webp"
    made = path.stat().st_mtime_ns
    client.get(f"/history/{op_id}/thumb")
    assert path.stat().st_mtime_ns == made


def test_pages_escape_what_comes_from_records(client):
    hostile = "<script>alert(1)</script><b>bold</b>"
    op_id = client.post("/api/generate/text-to-image", json={"prompt": hostile}).get_json()["operationId"]
    for url in (f"/history/{op_id}", "/history"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize("url", ["/", "/history", "/stats", "/admin", "/history?type=text_to_video",
                                 "/history?since=garbage"])
def test_pages_answer(client, url):
    response = client.get(url)
    assert response.status_code in (200, 400) and response.mimetype == "text/html"
