"""The web pages through Flask's test client: negotiation, CSRF, login, thumbnails."""

import io
import json
import re

import pytest

from generation_studio.routes import pages

from .conftest import open_image, png_bytes

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def csrf(client, url="/admin"):
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_a_native_form_post_is_redirected_to_its_operation(client, records):
    response = client.post("/api/generate/text-to-image", data={"prompt": "a barn"}, headers=HTML)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/history/{records()[0]['operationId']}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "a barn" in page and '<span class="type">Text to image</span>' in page


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
    response = client.post(f"/history/{op_id}/rerun", data={"csrf_token": csrf(client)},
                           headers=HTML)
    assert response.status_code == 303
    again = [r for r in records() if r["operationId"] != op_id]
    assert len(again) == 1 and again[0]["prompt"] == "a kite" and again[0]["parameters"]["seed"] == 4
    assert response.headers["Location"] == f"/history/{again[0]['operationId']}"


def test_run_again_resends_the_input_images(client, records, storage_dir):
    picture = png_bytes((48, 32), pattern=True)
    first = client.post("/api/edit/image", data={
        "prompt": "blur", "images": [(__import__("io").BytesIO(picture), "p.png")]},
                        content_type="multipart/form-data").get_json()["operationId"]
    client.post(f"/history/{first}/rerun", data={"csrf_token": csrf(client)}, headers=HTML)
    again = [r for r in records() if r["operationId"] != first][0]
    assert (storage_dir / again["inputImages"][0]["file"]).read_bytes() == picture


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


@pytest.mark.parametrize("url, status", [
    ("/", 200), ("/history", 200), ("/stats", 200), ("/admin", 200),
    ("/history?type=text_to_video", 200), ("/history?trash=only", 200),
    ("/history?starred=1&page=3", 200), ("/history?since=garbage", 400),
    ("/history?page=0", 400), ("/history?page=x", 400), ("/compare", 400)])
def test_pages_answer(client, url, status):
    response = client.get(url)
    assert response.status_code == status and response.mimetype == "text/html"


def make(client, prompt="a kite", **fields):
    return client.post("/api/generate/text-to-image",
                       json={"prompt": prompt, **fields}).get_json()["operationId"]


def make_workflow(client):
    body = client.post("/api/workflow/execute", data={
        "prompt": "make it brighter, then animate it", "duration": 1, "fps": 2,
        "images": [(io.BytesIO(png_bytes(pattern=True)), "p.png")]},
        content_type="multipart/form-data").get_json()
    return body["operationId"], client.get(f"/api/history/{body['operationId']}").get_json()[
        "operation"]["steps"]


def tiles(page: str) -> list[str]:
    """The ids of the gallery's tiles, in order."""
    return re.findall(r'class="pick" name="ids" value="([^"]+)"', page)


@pytest.mark.parametrize("name, words", [
    ("text_to_image", "Text to image"), ("img_to_img", "Image to image"),
    ("image_edit_multiple", "Edit (several images)"), ("generate_then_video", "Generate then video"),
    ("durationSeconds", "Duration seconds"), ("fps", "Frames per second")])
def test_names_read_as_words(name, words):
    assert pages.humanize(name) == words


def test_parameters_are_named_as_the_forms_name_them():
    assert pages.label("aspectRatio") == "Aspect ratio"
    assert pages.label("duration") == "Duration (seconds)"
    assert pages.label("someNewThing") == "Some new thing"


@pytest.mark.parametrize("current, pages_, links", [
    (1, 1, [1]), (1, 3, [1, 2, 3]), (5, 52, [1, None, 3, 4, 5, 6, 7, None, 52]),
    (52, 52, [1, None, 50, 51, 52]), (2, 9, [1, 2, 3, 4, None, 9])])
def test_page_links(current, pages_, links):
    assert pages.page_links(current, pages_) == links


def test_gallery_pages_by_number_keeping_the_filters(client, monkeypatch):
    monkeypatch.setattr(pages, "PAGE_SIZE", 2)
    made = [make(client, f"kite {n}") for n in range(5)]
    page = client.get("/history?type=text_to_image&q=kite&page=2").get_data(as_text=True)
    assert "5 operations, page 2 of 3" in page
    assert tiles(page) == made[::-1][2:4]
    assert 'href="/history?page=3&amp;type=text_to_image&amp;q=kite"' in page
    assert 'aria-current="page" aria-label="Page 2"' in page


def test_a_workflow_is_one_tile_with_its_steps_inside(client):
    workflow, steps = make_workflow(client)
    page = client.get("/history").get_data(as_text=True)
    assert tiles(page) == [workflow]
    assert '<span class="badge steps">2 steps</span>' in page
    assert "1 operation, page 1 of 1" in page
    inside = client.get(f"/history/{workflow}").get_data(as_text=True)
    assert all(f'href="/history/{step}"' in inside for step in steps)
    assert tiles(client.get(f"/history?parentId={workflow}").get_data(as_text=True)) == steps[::-1]


def test_a_failed_operation_shows_its_error_not_its_input(client):
    op_id = client.post("/api/edit/image", data={
        "prompt": "x", "images": [(io.BytesIO(png_bytes()), "p.png")], "outputFormat": "tiff"},
        content_type="multipart/form-data").get_json()["operationId"]
    page = client.get("/history").get_data(as_text=True)
    tile = page[page.index(f'value="{op_id}"'):page.index("</li>", page.index(f'value="{op_id}"'))]
    assert "<img" not in tile and "<video" not in tile
    assert '<span class="failure"><strong>Failed</strong><span class="error">outputFormat' in tile


def test_the_operation_page_shows_previews_and_links_the_originals(client):
    op_id = make(client, aspectRatio="16:9", seed=7)
    page = client.get(f"/history/{op_id}").get_data(as_text=True)
    out = f"{op_id}_out.jpg"
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources == [f"/history/{op_id}/preview/{out}?w=480"]
    assert f'href="/api/history/{op_id}/files/{out}" download' in page
    assert '<dt>Aspect ratio</dt><dd>16:9</dd>' in page and "<dt>Seed</dt><dd>7</dd>" in page
    assert f'href="/?use=op:{op_id}/{out}&amp;form=img-to-img"' in page
    assert f'href="/?use=op:{op_id}/{out}&amp;form=transition"' in page
    assert f'href="/?from={op_id}"' in page
    curl = json.loads(re.search(r'<script type="application/json" id="curl-data">(.*?)</script>',
                                page).group(1))
    assert curl == {"url": "/api/generate/text-to-image", "fields": {
        "aspectRatio": "16:9", "outputFormat": "jpg", "seed": 7, "prompt": "a kite", "images": []}}


def test_a_preview_is_small_and_only_of_the_sizes_offered(client):
    op_id = make(client)
    name = f"{op_id}_out.jpg"
    assert client.get(f"/history/{op_id}/preview/{name}?w=12").status_code == 400
    assert client.get(f"/history/{op_id}/preview/other.jpg?w=480").status_code == 404
    answer = client.get(f"/history/{op_id}/preview/{name}?w=480")
    assert answer.status_code == 200 and answer.mimetype == "image/webp"
    assert open_image(answer.data).width == 480


def test_the_curl_data_cannot_end_its_script_block(client):
    op_id = make(client, "</script><script>alert(1)</script>")
    page = client.get(f"/history/{op_id}").get_data(as_text=True)
    block = page[page.index('id="curl-data">'):]
    assert block.index("</script>") > block.index("\\u003c/script\\u003e")


def test_compare_two_marks_what_differs(client):
    first, second = make(client, seed=1), make(client, seed=2)
    page = client.get(f"/compare?ids={first}&ids={second}").get_data(as_text=True)
    assert re.search(r'<tr class="differs"><th scope="row">Seed <span class="marker">', page)
    assert '<tr><th scope="row">Prompt</th>' in page
    assert 'id="split" type="range"' in page


@pytest.mark.parametrize("count, status", [(1, 400), (5, 400)])
def test_compare_takes_two_to_four(client, count, status):
    ids = [make(client, seed=n) for n in range(count)]
    answer = client.get("/compare?" + "&".join(f"ids={i}" for i in ids))
    assert answer.status_code == status
    assert f"Compare takes 2 to 4 different operations (ids=…); {count} given" in \
        answer.get_data(as_text=True)


def test_compare_names_an_unknown_operation(client):
    answer = client.get(f"/compare?ids={make(client)}&ids=20990101_aaaaaaaaaaaa")
    assert answer.status_code == 404
    assert "No operation 20990101_aaaaaaaaaaaa in the history" in answer.get_data(as_text=True)


def test_made_from_and_used_by(client):
    first = make(client, seed=3)
    client.post(f"/history/{first}/rerun", data={"csrf_token": csrf(client)}, headers=HTML)
    again = [i for i in tiles(client.get("/history").get_data(as_text=True)) if i != first][0]
    page = client.get(f"/history/{again}").get_data(as_text=True)
    assert re.search(rf'<dt>Made from</dt><dd><ul class="lineage">\s*<li><a href="/history/{first}">'
                     r"Text to image</a>\s*<span class=\"muted\">run again from", page)
    page = client.get(f"/history/{first}").get_data(as_text=True)
    assert re.search(rf'<dt>Used by</dt><dd><ul class="lineage">\s*<li><a href="/history/{again}">',
                     page)


def test_trash_from_a_page_offers_undo(client):
    op_id = make(client)
    token = csrf(client)
    answer = client.post(f"/history/{op_id}/trash", data={"csrf_token": token, "next": "/history"})
    assert answer.status_code == 303
    page = client.get("/history").get_data(as_text=True)
    assert tiles(page) == []
    undo = page[page.index('<form method="post" action="/history/bulk" class="undo">'):]
    assert f'<input type="hidden" name="ids" value="{op_id}">' in undo[:undo.index("</form>")]
    assert tiles(client.get("/history?trash=only").get_data(as_text=True)) == [op_id]


def test_usage_charts_have_text_alternatives(client):
    make(client)
    page = client.get("/stats").get_data(as_text=True)
    assert page.count('role="img" aria-label="') == 4
    assert '<tr><th scope="row">Text to image</th><td>1</td><td>0</td></tr>' in page


def test_an_image_tile_offers_its_result_as_input(client):
    op_id = client.post("/api/generate/text-to-image", json={"prompt": "a dune"}).get_json()[
        "operationId"]
    result = client.get(f"/api/history/{op_id}").get_json()["operation"]["resultFile"]
    page = client.get("/history").get_data(as_text=True)
    tile = page[page.index(f'value="{op_id}"'):page.index("</li>", page.index(f'value="{op_id}"'))]
    link = f'href="/?use=op:{op_id}/{result}&amp;form=img-to-img"'
    assert link.replace("op:", "op%3A").replace(f"{op_id}/", f"{op_id}%2F") in tile or link in tile
    assert client.get(f"/?use=op:{op_id}/{result}&form=img-to-img").status_code == 200
