"""The history pages in a browser (Playwright on Debian's Chromium, a real
server process): the gallery's tiles, select many, trash and undo, compare,
an operation's page (videos, "Copy as curl", its weight in bytes, layout
shift), and axe-core on every page. Operations are seeded through the API.

The figures measured (bytes of the operation page, layout shift) are printed
for the README: run with ``-s`` to see them."""

import io
import random
import subprocess

import pytest
import requests
from PIL import Image
from playwright.sync_api import expect

from . import browser_support
from .axe import serious_violations
from .browser_support import shot

# The shared fixtures, named here for pytest to find.
browser, page = browser_support.browser, browser_support.page
server, server_env = browser_support.server, browser_support.server_env

ONE_MB = 1024 * 1024
CLS_LIMIT = 0.1

# The sum of layout shifts not caused by input, since the page started loading.
CLS_SCRIPT = """() => new Promise((resolve) => {
  let total = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (!entry.hadRecentInput) total += entry.value;
  }).observe({type: "layout-shift", buffered: true});
  setTimeout(() => resolve(total), 500);
})"""
# Every byte the page received: the document and each resource (encoded, as sent).
BYTES_SCRIPT = """() => [...performance.getEntriesByType("navigation"),
                        ...performance.getEntriesByType("resource")]
  .reduce((sum, entry) => sum + entry.transferSize, 0)"""


def photo(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG (gradients and grain, so it does not compress to nothing)."""
    rng = random.Random(seed)
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    tint = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    grain = Image.effect_noise((width, height), 60).convert("RGB")
    image = Image.blend(Image.blend(base, tint, 0.5), grain, 0.25)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def post(server, path, files=(), **fields):
    answer = requests.post(f"{server}{path}", data=fields, timeout=120,
                           files=[("images", (f"p{i}.jpg", data, "image/jpeg"))
                                  for i, data in enumerate(files)] or None)
    return answer.json()


@pytest.fixture(scope="module")
def seeded(server):
    """One operation of each kind the pages show differently, by name."""
    small = photo(320, 240, 1)
    ops = {
        "cat": post(server, "/api/generate/text-to-image", prompt="a cat by the sea", seed=1),
        "cat2": post(server, "/api/generate/text-to-image", prompt="a cat by the sea", seed=2),
        "video": post(server, "/api/video/text-to-video", prompt="waves at night", duration=1,
                      fps=8),
        "workflow": post(server, "/api/workflow/execute", [small], duration=1, fps=4,
                         prompt="make it brighter, then animate it"),
        "failed": post(server, "/api/edit/image", [b"not an image at all"], prompt="sepia"),
        "big": post(server, "/api/edit/image", [photo(2448, 1632, 2), photo(2448, 1632, 3)],
                    prompt="side by side"),
    }
    ids = {name: body["operationId"] for name, body in ops.items()}
    ids["steps"] = requests.get(f"{server}/api/history/{ids['workflow']}",
                                timeout=10).json()["operation"]["steps"]
    return ids


def tile(page, op_id):
    return page.locator(f".tile:has(input.pick[value='{op_id}'])")


def layout_shift(page) -> float:
    page.wait_for_load_state("networkidle")
    return page.evaluate(CLS_SCRIPT)


def test_gallery_shows_a_workflow_as_one_tile_and_failures_without_their_input(page, seeded):
    page.goto("/history")
    workflow = tile(page, seeded["workflow"])
    assert workflow.count() == 1
    assert workflow.locator(".badge.steps").inner_text() == "2 steps"
    for step in seeded["steps"]:
        assert tile(page, step).count() == 0
    failed = tile(page, seeded["failed"])
    assert failed.locator("img, video").count() == 0
    assert failed.locator(".failure").inner_text().startswith("Failed")
    assert "is not an image that can be read" in failed.locator(".failure .error").inner_text()
    assert tile(page, seeded["cat"]).locator(".type").inner_text() == "Text to image"
    video = tile(page, seeded["video"])
    assert video.locator("video[preload='none'][muted]").count() == 1
    assert video.locator(".play").inner_text().endswith("1 s")
    video.hover()
    page.wait_for_function("v => !v.paused && v.currentTime > 0", arg=video.locator(
        "video").element_handle(), timeout=5000)
    images = page.locator(".tile img")
    assert images.count() >= 3
    for n in range(images.count()):
        assert images.nth(n).get_attribute("loading") == "lazy"
        assert images.nth(n).get_attribute("width") == "320"
    shot(page, "history-gallery", full_page=True)


def test_gallery_pages_are_numbered_and_filters_stay_in_the_url(page, seeded):
    page.goto("/history?type=text_to_image")
    assert page.locator(".count").inner_text() == "2 operations, page 1 of 1"
    page.get_by_label("Prompt contains").fill("cat")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**q=cat**")
    assert "type=text_to_image" in page.url
    assert page.locator(".tile").count() == 2
    page.get_by_label("Until (jump to a date)").fill("2001-01-01")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**until=2001-01-01**")
    assert "q=cat" in page.url and page.locator(".tile").count() == 0


def test_star_from_the_operation_page(page, server, seeded):
    page.goto(f"/history/{seeded['workflow']}")
    page.get_by_role("button", name="Star", exact=True).click()
    page.wait_for_load_state()
    assert page.locator("h1 .badge.star").inner_text() == "★ starred"
    assert requests.get(f"{server}/api/history/{seeded['workflow']}",
                        timeout=5).json()["operation"]["starred"] is True
    page.goto("/history?starred=1")
    assert page.locator(".tile").count() == 1
    page.goto(f"/history/{seeded['workflow']}")
    page.get_by_role("button", name="Unstar").click()
    page.wait_for_load_state()
    assert page.locator("h1 .badge.star").count() == 0


@pytest.mark.parametrize("name", ["big", "compare"])
def test_phone_width(browser, server, seeded, name):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server,
                                  is_mobile=True)
    page = context.new_page()
    url = (f"/history/{seeded['big']}" if name == "big" else
           "/compare?" + "&".join(f"ids={seeded[n]}" for n in ("cat", "video", "workflow")))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, f"phone-{name}", full_page=True)
    context.close()


def test_gallery_layout_does_not_shift(page, seeded):
    page.goto("/history")
    shift = layout_shift(page)
    print(f"\ngallery CLS: {shift:.4f}")
    assert shift < CLS_LIMIT


def test_compare_two_from_the_gallery(page, seeded):
    page.goto("/history")
    compare = page.get_by_role("button", name="Compare")
    assert compare.is_disabled()
    for name in ("cat", "cat2"):
        tile(page, seeded[name]).locator("input.pick").check()
    assert page.locator(".bulk .selected").inner_text() == "2 selected"
    compare.click()
    page.wait_for_url("**/compare?ids=*")
    seed_row = page.locator("tr", has=page.locator("th", has_text="Seed"))
    assert seed_row.get_attribute("class") == "differs"
    assert seed_row.locator(".marker").text_content() == "≠ differs"
    assert page.locator("tr", has=page.locator("th", has_text="Prompt")).get_attribute("class") is None
    page.locator("#split").fill("20")
    assert page.locator(".overlay").evaluate(
        "o => getComputedStyle(o).getPropertyValue('--split')").strip() == "20%"
    clip = page.locator(".overlay .over img").evaluate("i => getComputedStyle(i).clipPath")
    assert clip == "inset(0px 80% 0px 0px)"
    assert serious_violations(page) == []
    shot(page, "compare")


def test_trash_from_the_gallery_and_undo(page, server, seeded):
    page.goto("/history")
    tile(page, seeded["cat2"]).locator("input.pick").check()
    page.get_by_role("button", name="Move to trash").click()
    page.wait_for_load_state()
    assert page.locator(".flash").inner_text().startswith("1 operation moved to the trash.")
    assert tile(page, seeded["cat2"]).count() == 0
    record = requests.get(f"{server}/api/history/{seeded['cat2']}", timeout=5).json()["operation"]
    assert isinstance(record["trashedAt"], str)
    page.get_by_role("button", name="Undo").click()
    page.wait_for_load_state()
    assert tile(page, seeded["cat2"]).count() == 1
    record = requests.get(f"{server}/api/history/{seeded['cat2']}", timeout=5).json()["operation"]
    assert record.get("trashedAt") is None


def test_the_trash_view_restores(page, server, seeded):
    requests.post(f"{server}/api/history/{seeded['cat']}/trash", timeout=5)
    try:
        page.goto("/history?trash=only")
        assert page.locator("h1").inner_text() == "Trash"
        assert page.locator(".tile").count() == 1
        tile(page, seeded["cat"]).locator("input.pick").check()
        page.get_by_role("button", name="Restore").click()
        page.wait_for_load_state()
        assert page.locator(".tile").count() == 0
    finally:
        requests.post(f"{server}/api/history/{seeded['cat']}/restore", timeout=5)
    assert requests.get(f"{server}/api/history/{seeded['cat']}",
                        timeout=5).json()["operation"].get("trashedAt") is None


def test_a_video_plays_on_its_page(page, seeded):
    page.goto(f"/history/{seeded['video']}")
    video = page.locator("section[aria-labelledby='out-title'] video")
    assert video.get_attribute("controls") == ""
    assert video.get_attribute("preload") == "metadata"
    assert "/preview/" in video.get_attribute("poster")
    played = video.evaluate("""async (v) => {
        v.muted = true;
        await v.play();
        const start = v.currentTime;
        await new Promise((done) => setTimeout(done, 600));
        return [start, v.currentTime, v.paused];
    }""")
    assert played[1] > played[0] and played[2] is False
    assert serious_violations(page) == []
    shot(page, "operation-video")


def test_an_operation_page_with_two_4_megapixel_inputs_weighs_under_1_mb(browser, server, seeded):
    context = browser.new_context(viewport={"width": 1366, "height": 768}, base_url=server)
    page = context.new_page()
    bodies = []
    page.on("response", lambda r: bodies.append(len(r.body())) if r.status == 200 else None)
    page.goto(f"/history/{seeded['big']}")
    page.wait_for_load_state("networkidle")
    page.mouse.wheel(0, 5000)
    page.wait_for_load_state("networkidle")
    sent = page.evaluate(BYTES_SCRIPT)
    originals = sum(e["bytes"] for e in requests.get(
        f"{server}/api/history/{seeded['big']}", timeout=5).json()["operation"]["inputImages"])
    print(f"\noperation page with two 4-MP inputs: {sent:,} bytes transferred, {sum(bodies):,} "
          f"bytes of bodies in {len(bodies)} responses (the inputs: {originals:,})")
    assert originals > 2 * ONE_MB  # the originals alone would be over the limit
    assert 0 < sent < ONE_MB and 0 < sum(bodies) < ONE_MB
    assert page.locator("section[aria-labelledby='in-title'] img").count() == 2
    context.close()


def test_the_operation_page_layout_does_not_shift(page, seeded):
    page.goto(f"/history/{seeded['big']}")
    shift = layout_shift(page)
    print(f"\noperation page CLS: {shift:.4f}")
    assert shift < CLS_LIMIT
    shot(page, "operation-big")


def test_use_as_input_and_edit_links(page, seeded):
    page.goto(f"/history/{seeded['cat']}")
    use = page.locator("section[aria-labelledby='out-title'] a.use-link")
    assert use.get_attribute("href") == \
        f"/?use=op:{seeded['cat']}/{seeded['cat']}_out.jpg&form=img-to-img"
    page.locator("section[aria-labelledby='out-title'] .use-menu summary").click()
    forms = page.locator("section[aria-labelledby='out-title'] .use-menu a").all_inner_texts()
    assert forms == ["Image to image", "Edit", "Pose transfer", "Style transfer", "Image to video",
                     "Animate an image", "Transition", "Workflow"]
    assert page.get_by_role("link", name="Edit and run again").get_attribute(
        "href") == f"/?from={seeded['cat']}"


def test_copy_as_curl_gives_a_command_that_runs_it_again(browser, server, seeded):
    context = browser.new_context(base_url=server)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    page.goto(f"/history/{seeded['workflow']}")
    page.get_by_role("button", name="Copy as curl").click()
    # The status is set once the clipboard has taken the text (a promise): wait for it
    expect(page.locator(".copy-status")).to_have_text("Copied the curl command to the clipboard.")
    command = page.evaluate("navigator.clipboard.readText()")
    context.close()
    assert command.startswith(f"curl -X POST '{server}/api/workflow/execute'")
    answer = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    body = requests.models.complexjson.loads(answer.stdout)
    assert body["success"] is True and body["operationType"] == "edit_then_video"


def test_times_are_local_with_utc_on_hover(browser, server, seeded):
    context = browser.new_context(base_url=server, timezone_id="Asia/Tokyo", locale="en-GB")
    page = context.new_page()
    page.goto(f"/history/{seeded['cat']}")
    moment = page.locator("p.muted time")
    created = moment.get_attribute("datetime")
    assert moment.get_attribute("title") == created[:19].replace("T", " ") + " UTC"
    hour = (int(created[11:13]) + 9) % 24  # Tokyo is UTC+9
    assert f"{hour:02d}:{created[14:16]}" in moment.inner_text()
    context.close()


@pytest.mark.parametrize("name", ["gallery", "image", "video", "workflow", "failed", "stats",
                                  "login", "admin", "trash", "compare4"])
def test_no_serious_accessibility_violations(page, seeded, name):
    urls = {"gallery": "/history", "stats": "/stats", "login": "/login", "admin": "/admin",
            "trash": "/history?trash=only",
            "compare4": "/compare?" + "&".join(f"ids={seeded[n]}" for n in
                                                ("cat", "video", "workflow", "failed"))}
    ops = {"image": "cat", "video": "video", "workflow": "workflow", "failed": "failed"}
    page.goto(urls.get(name) or f"/history/{seeded[ops[name]]}")
    page.wait_for_load_state("networkidle")
    assert serious_violations(page) == []
    shot(page, f"page-{name}")


def test_the_gallery_works_with_the_keyboard(page, seeded):
    page.goto("/history")
    first = tile(page, seeded["cat"]).locator("input.pick")
    first.focus()
    page.keyboard.press("Space")
    assert first.is_checked()
    tile(page, seeded["video"]).locator("input.pick").focus()
    page.keyboard.press("Space")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # the focus is visible
    compare = page.get_by_role("button", name="Compare")
    compare.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/compare?ids=*")
    assert page.locator(".compare-grid figure").count() == 2
