"""The studio in a browser: headless Chromium (Debian's) driven by Playwright,
against a real server process. Screenshots of each page go to
tests/screenshots/ (not committed) for a reviewer to look at."""

import functools

import pytest
import requests
from PIL import Image

from . import browser_support

# The shared fixtures (server, browser), named here for pytest to find.
browser, server = browser_support.browser, browser_support.server
ADMIN_TOKEN = "browser-test-admin"
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> a cat'
shot = functools.partial(browser_support.shot, full_page=True)


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    return {**browser_support.settings(tmp_path_factory.mktemp("browser")),
            "FLASK_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture
def page(browser, server):
    """A page that keeps every URL it requested (none may leave the studio)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    page = context.new_page()
    page.requests_seen = []
    page.on("request", lambda r: page.requests_seen.append(r.url))
    yield page
    context.close()


@pytest.fixture
def pictures(tmp_path):
    paths = []
    for n, colour in enumerate([(220, 60, 40), (40, 90, 220)]):
        image = Image.linear_gradient("L").resize((160, 120)).convert("RGB")
        image = Image.blend(image, Image.new("RGB", image.size, colour), 0.6)
        paths.append(tmp_path / f"picture{n}.png")
        image.save(paths[-1])
    return paths


def generate(page, form_id, prompt=None, files=(), **fields):
    """Open one studio form, fill it, submit it, and wait for its outcome."""
    page.goto(f"/?form={form_id}")
    form = page.locator(f"#{form_id} form")
    if prompt is not None:
        form.get_by_label("Prompt" if form_id != "workflow" else "What to do", exact=False).first.fill(prompt)
    if files:
        form.locator('input[type="file"]').set_input_files([str(f) for f in files])
    for name, value in fields.items():
        form.locator(f'[name="{name}"]').fill(str(value))
    form.get_by_role("button", name="Generate").click()
    outcome = form.locator(".outcome")
    outcome.locator("img, video, .error").first.wait_for(timeout=60_000)
    return outcome


def loaded(image_locator) -> bool:
    return image_locator.evaluate("img => img.complete && img.naturalWidth > 0")


def test_text_to_image_from_the_studio(page):
    page.goto("/")
    outcome = generate(page, "text-to-image", "a lighthouse at sunset by the sea")
    image = outcome.locator("img")
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert outcome.get_by_role("link", name="Open the record").get_attribute("href").startswith("/history/")
    shot(page, "studio")


def test_an_edit_with_two_uploaded_files(page, pictures):
    page.goto("/")
    outcome = generate(page, "edit", "sepia and mirror", files=pictures)
    assert outcome.locator(".error").count() == 0
    outcome.locator("img").wait_for()
    record_url = outcome.get_by_role("link", name="Open the record").get_attribute("href")
    page.goto(record_url)
    assert page.locator("h1 .type").inner_text() == "Edit (several images)"
    assert page.locator("section", has_text="Inputs").locator("img").count() == 2
    shot(page, "operation-edit")


def test_a_transition_shows_the_animation(page, pictures):
    page.goto("/")
    outcome = generate(page, "transition", files=pictures, duration=1, fps=4)
    video = outcome.locator("video")
    video.wait_for()
    assert video.get_attribute("src").endswith(".mp4")


def test_a_workflow_and_its_steps(page, pictures):
    page.goto("/")
    outcome = generate(page, "workflow", "make it brighter, then animate it", files=pictures[:1],
                       duration=1, fps=3)
    assert outcome.inner_text().startswith("Edit then video in ")
    outcome.get_by_role("link", name="Open the record").click()
    steps = page.locator("ol.steps li")
    assert steps.count() == 2
    assert "Edit" in steps.nth(0).inner_text()
    shot(page, "operation-workflow")


def test_the_server_error_is_shown_as_given(page):
    page.goto("/")
    outcome = generate(page, "text-to-image", "   ")
    assert outcome.locator(".error").inner_text() == \
        "prompt is required: a non-empty text describing what to make"
    assert outcome.get_by_role("link", name="Open the failed record").is_visible()


def test_without_javascript_a_form_post_lands_on_the_operation(browser, server):
    context = browser.new_context(java_script_enabled=False, base_url=server)
    page = context.new_page()
    page.goto("/")
    page.locator("#text-to-image textarea").fill("a quiet harbour")
    page.locator("#text-to-image").get_by_role("button", name="Generate").click()
    page.wait_for_url("**/history/*")
    assert page.locator("h1 .type").inner_text() == "Text to image"
    assert page.locator(".prompt-text").inner_text() == "a quiet harbour"
    context.close()


def test_gallery_filter_open_run_again_and_delete(page, server):
    for prompt in ("waves on a beach", "a windmill"):
        requests.post(f"{server}/api/video/text-to-video",
                      data={"prompt": prompt, "duration": 1, "fps": 2}, timeout=60)
    page.goto("/history")
    page.get_by_label("Type").select_option("text_to_video")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**type=text_to_video**")
    tiles = page.locator(".tile")
    assert tiles.count() >= 2
    assert all("Text to video" in t for t in tiles.all_inner_texts())
    shot(page, "gallery")
    tiles.filter(has_text="a windmill").first.locator("a").first.click()
    first_url = page.url
    page.get_by_role("button", name="Run again").click()
    page.wait_for_url(lambda url: url != first_url and "/history/" in url)
    again_id = page.url.rsplit("/", 1)[1]
    assert page.locator(".prompt-text").inner_text() == "a windmill"
    page.get_by_role("button", name="Delete forever…").click()
    page.wait_for_url("**/login**")  # ADMIN_TOKEN is set: log in first
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/delete**")
    assert "This cannot be undone" in page.content()
    page.get_by_role("button", name="Delete", exact=True).click()
    page.wait_for_url("**/history")
    assert "Deleted 1 operation(s)" in page.locator(".flash").inner_text()
    assert requests.get(f"{server}/api/history/{again_id}", timeout=5).status_code == 404


def test_a_prompt_with_html_shows_as_text(page, server):
    op_id = requests.post(f"{server}/api/generate/text-to-image", json={"prompt": HOSTILE},
                          timeout=30).json()["operationId"]
    for url in (f"/history/{op_id}", "/history"):
        page.goto(url)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__pwned") is None
        assert HOSTILE in page.locator("main").inner_text()
    assert page.locator("main script").count() == 0


def test_usage_and_admin_pages(page):
    page.goto("/stats")
    assert page.locator("svg.chart").count() == 4
    assert "operation(s)" in page.locator(".lead").inner_text()
    shot(page, "stats")
    page.goto("/admin")
    page.wait_for_url("**/login**")
    page.get_by_label("Admin token").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    assert page.locator(".error").inner_text() == "That is not the admin token."
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin")
    page.get_by_label("Older than").first.fill("0d")
    page.get_by_role("button", name="Preview").click()
    assert "would be deleted" in page.locator(".preview").inner_text()
    shot(page, "admin")


def test_phone_width_and_no_external_requests(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server,
                                  is_mobile=True)
    page = context.new_page()
    seen = []
    page.on("request", lambda r: seen.append(r.url))
    for url, name in (("/", "studio-phone"), ("/history", "gallery-phone"), ("/stats", None)):
        page.goto(url)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, url
        if name:
            shot(page, name)
    assert seen and all(u.startswith(server) or u.startswith("data:") for u in seen), seen
    context.close()


def test_every_field_has_a_label(page):
    page.goto("/")
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length)).map(e => e.name)""")
    assert unlabeled == []
    assert page.locator("form.op-form").count() == 10
