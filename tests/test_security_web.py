"""Web security: the headers of every answer, stored files that are never
active content nor a way out of the storage folder, secrets kept out of
records, logs and error answers, the admin session (redirects, revocation,
cookie flags, rate limit) and CSRF on cookie-authenticated mutations."""

import json
import logging
import re
import time
import zipfile

import pytest

from generation_studio import create_app
from generation_studio.web import SECURITY_HEADERS

from .conftest import png_bytes

TOKEN = "admin-token-for-tests"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
EXPECTED_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
EVIL = "http://evil.example"


@pytest.fixture
def make_app(storage_dir, tmp_path):
    made = []

    def make(**settings):
        app = create_app({"TESTING": True, "STORAGE_DIR": str(storage_dir),
                          "HISTORY_CHECK_WAITS": True,
                          "ADMIN_SESSIONS_PATH": str(tmp_path / "sessions.sqlite3"), **settings})
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["jobs"].stop_workers()


@pytest.fixture
def admin_app(make_app):
    return make_app(ADMIN_TOKEN=TOKEN)


def generate(client) -> str:
    """A new operation (a stored JPEG result), made with the bearer token if asked."""
    response = client.post("/api/generate/text-to-image", json={"prompt": "a red square"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["operationId"]


def csrf(client, path="/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def login(client, token=TOKEN, next_path="/admin"):
    return client.post("/login", data={"csrf_token": csrf(client), "token": token,
                                       "next": next_path})


# Headers ---------------------------------------------------------------------------
def test_every_route_answers_with_the_security_headers(app, client):
    op_id = generate(client)
    record = client.get(f"/api/history/{op_id}").get_json()["operation"]
    values = {"op_id": op_id, "name": record["outputs"][0]["file"], "filename": "style.css"}
    answers = {}
    for rule in app.url_map.iter_rules():
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        url = rule.build({arg: values.get(arg, "x") for arg in rule.arguments})[1]
        if method == "GET":
            answers[rule.endpoint] = client.get(url, query_string={"w": 480})
        elif rule.endpoint.startswith(("generate.", "edit.", "video", "workflow.")):
            answers[rule.endpoint] = client.post(url, json={})  # refused: 400
        else:
            answers[rule.endpoint] = client.open(url, method=method, headers={"Origin": EVIL})
    answers["404"] = client.get("/no/such/page")
    answers["405"] = client.put("/api/history")
    assert len(answers) == len(list(app.url_map.iter_rules())) + 2
    for route, response in answers.items():
        headers = {name: response.headers.get(name) for name in EXPECTED_HEADERS}
        assert headers == EXPECTED_HEADERS, route


PAGES = ["/", "/history", "/stats", "/admin", "/login", "/compare"]


def test_pages_need_nothing_the_policy_forbids(client):
    """No inline script (only JSON data blocks), no event attribute, no style
    attribute, no javascript: URL: everything runs under the policy."""
    op_id = generate(client)
    for path in PAGES + [f"/history/{op_id}", f"/history/{op_id}/delete"]:
        page = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script\b[^>]*>", page):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", page), path
        assert not re.search(r"<[^>]+\sstyle\s*=", page), path
        assert "javascript:" not in page.lower(), path


def test_security_headers_are_the_documented_ones():
    assert SECURITY_HEADERS == EXPECTED_HEADERS


# Stored files ----------------------------------------------------------------------
HTML = b"<!doctype html><script>alert(document.cookie)</script>"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(32)


def saved(app, *inputs) -> dict:
    """A failed operation kept with these ``(bytes, name)`` inputs."""
    history = app.extensions["history"]
    return history.save({"operationType": "image_edit_single", "status": "failed",
                         "createdAt": "2026-11-26T00:00:00.000Z", "prompt": "x",
                         "parameters": {}, "provider": {"name": "local"}}, list(inputs))


def set_types(app, op_id, *types):
    """Give the record's inputs these content types, as a hand-edited record would."""
    def change(record):
        return {"inputImages": [{**e, "contentType": t}
                                for e, t in zip(record["inputImages"], types)]}
    app.extensions["history"].update(op_id, change)


def fetch_file(client, op_id, name):
    return client.get(f"/api/history/{op_id}/files/{name}")


@pytest.mark.parametrize("data, recorded, served, disposition", [
    (png_bytes(), None, "image/png", "inline"),
    (MP4, None, "video/mp4", "inline"),
    (HTML, None, "application/octet-stream", "attachment"),
    (b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", None,
     "application/octet-stream", "attachment"),
    (b'{"a": 1}', "application/json", "application/json", "attachment"),
    (b"a,b\n1,2\n", "text/csv", "text/csv; charset=utf-8", "attachment"),
    (HTML, "text/html", "application/octet-stream", "attachment"),
    (HTML, "image/svg+xml", "application/octet-stream", "attachment"),
    (HTML, "text/html; charset=utf-8", "application/octet-stream", "attachment"),
])
def test_stored_files_are_served_as_allowed_types_only(app, client, data, recorded, served,
                                                       disposition):
    record = saved(app, (data, "upload.bin"))
    op_id, name = record["operationId"], record["inputImages"][0]["file"]
    if recorded:
        set_types(app, op_id, recorded)
    response = fetch_file(client, op_id, name)
    assert response.status_code == 200
    assert response.data == data
    assert response.headers["Content-Type"] == served
    assert response.headers["Content-Disposition"] == f"{disposition}; filename={name}"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_stored_video_answers_ranges(app, client):
    record = saved(app, (MP4, "clip.mp4"))
    response = client.get(f"/api/history/{record['operationId']}/files/"
                          f"{record['inputImages'][0]['file']}", headers={"Range": "bytes=4-11"})
    assert response.status_code == 206
    assert response.data == b"ftypmp42"


OUTSIDE = b"\x89PNG\r\n\x1a\n outside the storage folder"


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..%2F..%2Fetc%2Fpasswd"])
def test_a_file_name_in_a_record_never_leads_outside(app, client, name, tmp_path):
    op_id = generate(client)
    secret = tmp_path / "outside.png"
    secret.write_bytes(OUTSIDE)
    entry = {"contentType": "image/png", "bytes": len(OUTSIDE), "sha256": "0" * 64,
             "width": 8, "height": 8}
    planted = [{**entry, "file": name}, {**entry, "file": str(secret)}]
    app.extensions["history"].update(op_id, lambda r: {"inputImages": planted})
    for url in (f"/api/history/{op_id}/files/{name}", f"/api/history/{op_id}/files/{secret}"):
        assert client.get(url).status_code == 404, url
    page = client.get(f"/history/{op_id}")
    assert page.status_code == 200
    assert b"outside the storage folder" not in page.data
    thumb = client.get(f"/history/{op_id}/thumb")  # made from the real result
    assert thumb.status_code == 200 and thumb.data[8:12] == b"WEBP"


def test_a_symbolic_link_in_the_storage_folder_is_never_served(app, client, storage_dir,
                                                               tmp_path):
    op_id = generate(client)
    name = client.get(f"/api/history/{op_id}").get_json()["operation"]["outputs"][0]["file"]
    secret = tmp_path / "outside.jpg"
    secret.write_bytes(b"\xff\xd8\xff outside the storage folder")
    (storage_dir / name).unlink()
    (storage_dir / name).symlink_to(secret)
    response = fetch_file(client, op_id, name)
    assert response.status_code == 404
    assert client.get(f"/history/{op_id}/thumb").status_code == 404  # no other picture


def test_a_linked_thumbnail_folder_is_never_served(client, storage_dir, tmp_path):
    op_id = generate(client)
    assert client.get(f"/history/{op_id}/thumb").status_code == 200  # made, in .thumbs
    elsewhere = tmp_path / "elsewhere"
    (storage_dir / ".thumbs").rename(elsewhere)
    (elsewhere / f"{op_id}.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBP outside")
    (storage_dir / ".thumbs").symlink_to(elsewhere, target_is_directory=True)
    response = client.get(f"/history/{op_id}/thumb")
    assert response.status_code == 404
    assert b"outside" not in response.data


def test_a_linked_thumbnail_is_made_again_not_followed(client, storage_dir, tmp_path):
    op_id = generate(client)
    assert client.get(f"/history/{op_id}/thumb").status_code == 200
    thumb = storage_dir / ".thumbs" / f"{op_id}.webp"
    secret = tmp_path / "outside.webp"
    secret.write_bytes(b"RIFF\x00\x00\x00\x00WEBP outside")
    thumb.unlink()
    thumb.symlink_to(secret)
    response = client.get(f"/history/{op_id}/thumb")
    assert response.status_code == 200
    assert b"outside" not in response.data
    assert secret.read_bytes() == b"RIFF\x00\x00\x00\x00WEBP outside"


def test_a_linked_day_archive_is_never_read(app, client, storage_dir, tmp_path):
    op_id = generate(client)
    name = client.get(f"/api/history/{op_id}").get_json()["operation"]["outputs"][0]["file"]
    (storage_dir / name).unlink()
    outside = tmp_path / "outside.zip"
    with zipfile.ZipFile(outside, "w") as z:
        z.writestr(name, b"\xff\xd8\xff outside the storage folder")
    (storage_dir / "archives").mkdir(exist_ok=True)
    (storage_dir / "archives" / f"{op_id[:8]}.zip").symlink_to(outside)
    assert fetch_file(client, op_id, name).status_code == 404


# Secrets ---------------------------------------------------------------------------
PROVIDER_TOKEN = "r8_configured_secret_value"


def test_nested_and_embedded_secrets_never_reach_the_record(make_app, storage_dir):
    app = make_app(REPLICATE_API_TOKEN=PROVIDER_TOKEN, ADMIN_TOKEN=12345)
    client = app.test_client()
    body = {"prompt": "a red square",
            "options": {"api_key": "nested-api-key", "clientSecret": "nested-client-secret",
                        "deeper": [{"password": "password-in-a-list"}, "keep me"],
                        "note": f"made with {PROVIDER_TOKEN} inside"},
            "privateKey": "camel-case-key",
            "extra": json.dumps({"token": "json-written-in-a-text"}),
            "pin": "12345"}
    response = client.post("/api/generate/text-to-image", json=body)
    assert response.status_code == 200
    [path] = storage_dir.glob("*.json")
    text = path.read_text()
    for secret in ("nested-api-key", "nested-client-secret", "password-in-a-list",
                   PROVIDER_TOKEN, "camel-case-key", "json-written-in-a-text", "12345"):
        assert secret not in text, secret
    parameters = json.loads(text)["parameters"]
    assert parameters == {"options": {"deeper": [{}, "keep me"],
                                      "note": "made with [redacted] inside"},
                          "extra": "{}"}


def test_log_lines_never_carry_a_configured_secret(make_app, caplog):
    app = make_app(REPLICATE_API_TOKEN=PROVIDER_TOKEN)
    with caplog.at_level(logging.INFO), app.app_context():
        app.logger.info("calling with %s", PROVIDER_TOKEN)
        logging.getLogger("generation_studio.providers.hosted").warning(
            f"token {PROVIDER_TOKEN} refused")
        try:
            raise RuntimeError(f"boom {PROVIDER_TOKEN}")
        except RuntimeError:
            app.logger.exception("failed")
    assert PROVIDER_TOKEN not in caplog.text
    assert caplog.text.count("[redacted]") == 3


def test_error_answers_never_carry_a_configured_secret(make_app):
    client = make_app(REPLICATE_API_TOKEN=PROVIDER_TOKEN).test_client()
    response = client.get(f"/api/history/{PROVIDER_TOKEN}")
    assert response.status_code == 404
    assert response.get_json()["error"] == "No operation '[redacted]'"


# The admin session -----------------------------------------------------------------
@pytest.mark.parametrize("target", [
    "//evil.example", "////evil.example", "/\\evil.example", "/\t/evil.example",
    "https://evil.example/", "javascript:alert(1)", "http:/evil.example", "evil.example"])
def test_login_never_redirects_off_the_site(admin_app, target):
    client = admin_app.test_client()
    assert client.get(f"/login?next={target}").status_code == 200
    response = login(client, next_path=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin"


def test_login_goes_back_to_a_local_path(admin_app):
    response = login(admin_app.test_client(), next_path="/history?q=cat")
    assert response.headers["Location"] == "/history?q=cat"


def test_logout_revokes_the_session_server_side(admin_app):
    first, copy = admin_app.test_client(), admin_app.test_client()
    login(first)
    copy.set_cookie("session", first.get_cookie("session").value)
    assert copy.get("/admin").status_code == 200
    op_id = generate(first)
    first.post("/logout", data={"csrf_token": csrf(first, "/admin")})
    assert first.get("/admin").status_code == 302
    assert copy.get("/admin").status_code == 302  # the copied cookie no longer works
    deleted = copy.delete(f"/api/history/{op_id}", headers={"Origin": "http://localhost"})
    assert deleted.status_code == 401


@pytest.mark.parametrize("base, secure", [("http://localhost", False),
                                          ("https://localhost", True)])
def test_the_session_cookie_flags(admin_app, base, secure):
    client = admin_app.test_client()
    page = client.get("/login", base_url=base).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", base_url=base, data={"csrf_token": token, "token": TOKEN})
    assert response.status_code == 303
    flags = {f.strip().split("=")[0]: f.strip() for f in response.headers["Set-Cookie"].split(";")}
    assert flags["HttpOnly"] == "HttpOnly"
    assert flags["SameSite"] == "SameSite=Lax"
    assert ("Secure" in flags) is secure


def test_failed_logins_are_rate_limited_per_client(make_app):
    app = make_app(ADMIN_TOKEN=TOKEN, LOGIN_MAX_FAILURES=3, LOGIN_WINDOW_SECONDS=1)
    client = app.test_client()
    for _ in range(3):
        assert login(client, token="wrong").status_code == 401
    refused = login(client)  # even the right token, while it waits
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.2"
    assert login(other).status_code == 303  # another address is not held back
    time.sleep(1.05)
    assert login(client).status_code == 303


@pytest.mark.parametrize("token", [12345, "numéro-ünïcode"])
def test_any_admin_token_works(make_app, token):
    """A numeric FLASK_ADMIN_TOKEN arrives as a number from the environment."""
    app = make_app(ADMIN_TOKEN=token)
    client = app.test_client()
    assert login(client, token=str(token)).status_code == 303
    op_id = generate(client)
    response = app.test_client().delete(f"/api/history/{op_id}",
                                        headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


# CSRF on mutations -------------------------------------------------------------------
@pytest.fixture
def admin(admin_app):
    """A client logged in as the admin, with an operation to change."""
    client = admin_app.test_client()
    login(client)
    client.op_id = generate(client)
    client.csrf = csrf(client, "/admin")
    return client


def exists(client, op_id) -> bool:
    return client.get(f"/api/history/{op_id}").status_code == 200


@pytest.mark.parametrize("headers", [{"Origin": EVIL}, {"Referer": EVIL + "/page"},
                                     {"Origin": "null"}, {}])
def test_a_cookie_mutation_from_elsewhere_is_refused(admin, headers):
    response = admin.delete(f"/api/history/{admin.op_id}", headers=headers)
    assert response.status_code == 403
    assert ("Cross-origin request refused" if headers else "X-CSRF-Token") in \
        response.get_json()["error"]
    assert exists(admin, admin.op_id)


@pytest.mark.parametrize("headers", [{"Origin": "http://localhost"},
                                     {"Referer": "http://localhost/history"}])
def test_a_cookie_mutation_from_the_studio_is_allowed(admin, headers):
    assert admin.delete(f"/api/history/{admin.op_id}", headers=headers).status_code == 200
    assert not exists(admin, admin.op_id)


def test_the_csrf_header_allows_a_cookie_mutation(admin):
    response = admin.delete(f"/api/history/{admin.op_id}", headers={"X-CSRF-Token": admin.csrf})
    assert response.status_code == 200
    wrong = admin.post(f"/api/history/{generate(admin)}/cancel",
                       headers={"X-CSRF-Token": "not-the-token"})
    assert wrong.status_code == 403


def test_cancel_from_elsewhere_is_refused(admin):
    response = admin.post(f"/api/history/{admin.op_id}/cancel", headers={"Origin": EVIL})
    assert response.status_code == 403


def test_api_clients_use_the_bearer_token(admin_app):
    client = admin_app.test_client()
    op_id = generate(client)
    assert client.delete(f"/api/history/{op_id}").status_code == 401
    assert client.delete(f"/api/history/{op_id}",
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.delete(f"/api/history/{op_id}",
                         headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_an_open_studio_still_refuses_other_sites(client):
    op_id = generate(client)
    refused = client.delete(f"/api/history/{op_id}", headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert exists(client, op_id)
    assert client.delete(f"/api/history/{op_id}").status_code == 200  # curl, no Origin


def test_sessions_are_kept_hashed(admin_app, tmp_path):
    """The server's file of live sessions gives no cookie away."""
    client = admin_app.test_client()
    login(client)
    cookie = client.get_cookie("session").value
    session = admin_app.session_interface.open_session(
        admin_app, admin_app.request_class({"HTTP_COOKIE": f"session={cookie}"}))
    assert len(session["admin"]) == 43
    assert session["admin"].encode() not in (tmp_path / "sessions.sqlite3").read_bytes()


def test_a_linked_thumbs_folder_is_never_written_into(client, storage_dir, tmp_path):
    op_id = generate(client)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    thumbs = storage_dir / ".thumbs"
    if thumbs.exists():
        for p in thumbs.iterdir():
            p.unlink()
        thumbs.rmdir()
    thumbs.symlink_to(outside)
    assert client.get(f"/history/{op_id}/thumb").status_code == 404
    assert list(outside.iterdir()) == []
