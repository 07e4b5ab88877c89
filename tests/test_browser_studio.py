"""The studio page in a browser (Playwright on Debian's Chromium, a real
server): choosing a task and sending a form with the keyboard alone, a result
tweaked and run again, a stored image used as an input, images put in order
before sending, a strip of recent results; axe-core on each state, and
screenshots at 1366×768 in tests/screenshots/."""

import hashlib

import pytest
import requests
from PIL import Image

from . import browser_support
from .axe import serious_violations
from .browser_support import shot

# The shared fixtures, used by name.
browser, page = browser_support.browser, browser_support.page
server, server_env = browser_support.server, browser_support.server_env

FOCUSED_ID = "document.activeElement && document.activeElement.id"


def make(server, path, **fields) -> dict:
    """An operation made through the API; its record."""
    answer = requests.post(f"{server}{path}", json=fields, timeout=60).json()
    assert answer["success"] is True, answer
    return record(server, answer["operationId"])


def record(server, op_id) -> dict:
    return requests.get(f"{server}/api/history/{op_id}", timeout=10).json()["operation"]


def file_bytes(server, op_id, name) -> bytes:
    return requests.get(f"{server}/api/history/{op_id}/files/{name}", timeout=10).content


def output_ref(op) -> str:
    return f"op:{op['operationId']}/{op['outputs'][0]['file']}"


def tab_until(page, condition: str, limit: int = 80, key: str = "Tab") -> None:
    """Press Tab (or ``key``) until the JS ``condition`` holds, as a keyboard user would."""
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate(condition):
            return
    raise AssertionError(f"Tab never reached: {condition}")


def submit_and_wait(page, section_id) -> str:
    """Click Generate in the form shown; the id of the operation it made."""
    page.locator(f"#{section_id} form").get_by_role("button", name="Generate").click()
    return finished(page, section_id)


def finished(page, section_id) -> str:
    """The id of the operation whose result the form shows, once it shows."""
    link = page.locator(f"#{section_id} .outcome").get_by_role("link", name="Open the record")
    link.wait_for(timeout=60_000)
    return link.get_attribute("href").rsplit("/", 1)[1]


def loaded(image) -> bool:
    """Whether an <img> shows a picture, once it has loaded."""
    image.page.wait_for_function("img => img.complete", arg=image.element_handle())
    return image.evaluate("img => img.naturalWidth > 0")


def roles(page, section_id) -> list:
    return page.locator(f"#{section_id} .pick .role").all_inner_texts()


def names(page, section_id) -> list:
    return page.locator(f"#{section_id} .pick .pick-name").all_inner_texts()


def test_keyboard_alone_chooses_a_task_and_sends_it(page, server):
    page.goto("/")
    assert serious_violations(page) == []
    tab_until(page, "document.activeElement.textContent === 'Image to image'")
    page.keyboard.press("Enter")
    assert page.url.endswith("/?form=img-to-img")
    assert page.evaluate(FOCUSED_ID) == "img-to-img-title"
    assert page.locator("#img-to-img").is_visible() and page.locator("#text-to-image").is_hidden()
    tab_until(page, "document.activeElement.textContent === 'Text to image'", key="Shift+Tab")
    page.keyboard.press("Enter")
    assert page.locator("#text-to-image").is_visible()
    tab_until(page, f"{FOCUSED_ID} === 'text-to-image-prompt'")
    page.keyboard.type("a lighthouse on a cliff at night")
    tab_until(page, "document.activeElement.textContent === 'Generate'")
    page.keyboard.press("Enter")
    op_id = finished(page, "text-to-image")
    assert record(server, op_id)["prompt"] == "a lighthouse on a cliff at night"
    image = page.locator("#text-to-image .outcome img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    page.locator(f'.strip li[data-id="{op_id}"] img').wait_for()
    assert serious_violations(page) == []
    shot(page, "studio-1366")


def test_tweak_a_field_and_run_again(page, server):
    source = make(server, "/api/generate/text-to-image", prompt="a harbour at night",
                  seed=1234, aspectRatio="16:9")
    page.goto(f"/?from={source['operationId']}")
    form = page.locator("#text-to-image form")
    assert form.locator("textarea").input_value() == "a harbour at night"
    assert form.get_by_label("Seed").input_value() == "1234"
    assert form.get_by_label("Aspect ratio").input_value() == "16:9"
    assert page.locator("#text-to-image .filled").inner_text().startswith(
        "Filled from Text to image “a harbour at night”: change what you like")
    assert serious_violations(page) == []
    shot(page, "studio-from-1366")
    form.locator("textarea").fill("a harbour at dawn")
    made = record(server, submit_and_wait(page, "text-to-image"))
    assert made["prompt"] == "a harbour at dawn"
    assert made["task"]["params"]["seed"] == 1234
    assert made["task"]["params"]["aspectRatio"] == "16:9"
    assert made["derivedFrom"] == [{"operationId": source["operationId"], "file": None,
                                    "relation": "rerun"}]


def test_use_a_stored_result_as_input(page, server):
    source = make(server, "/api/generate/text-to-image", prompt="a forest in the fog", seed=7)
    page.goto(f"/?use={output_ref(source)}&form=img-to-img")
    assert page.locator("#img-to-img").is_visible()
    assert roles(page, "img-to-img") == ["Image"]
    assert loaded(page.locator("#img-to-img .pick img"))
    page.locator("#img-to-img textarea").fill("make it warmer")
    made = record(server, submit_and_wait(page, "img-to-img"))
    assert len(made["inputImages"]) == 1
    assert file_bytes(server, made["operationId"], made["inputImages"][0]["file"]) == \
        file_bytes(server, source["operationId"], source["outputs"][0]["file"])


def test_use_as_input_from_the_recent_strip(page, server):
    source = make(server, "/api/generate/text-to-image", prompt="a red kite over hills", seed=3)
    page.goto("/")
    tile = page.locator(f'.strip li[data-id="{source["operationId"]}"]')
    tile.get_by_role("button", name="Use as input").click()
    # Text to image takes no image: the first form that does opens with it.
    assert page.locator("#img-to-img").is_visible()
    assert page.url.endswith("/?form=img-to-img")
    assert names(page, "img-to-img") == [source["outputs"][0]["file"]]
    assert loaded(page.locator("#img-to-img .pick img"))
    assert tile.get_by_role("link").get_attribute("href") == f"/history/{source['operationId']}"


def test_the_recent_strip_shows_new_operations_without_a_reload(page, server):
    page.goto("/")
    answer = requests.post(f"{server}/api/video/text-to-video", timeout=10,
                           headers={"Prefer": "respond-async"},
                           json={"prompt": "rain on a window", "duration": 1, "fps": 4}).json()
    tile = page.locator(f'.strip li[data-id="{answer["operationId"]}"]')
    tile.locator("img").wait_for(timeout=20_000)
    assert tile.locator(".cap").inner_text() == "Text to video"
    assert tile.locator(".play").count() == 1
    assert tile.get_by_role("button", name="Use as input").count() == 0  # a video is no image


@pytest.fixture
def picture(tmp_path):
    image = Image.linear_gradient("L").resize((160, 120)).convert("RGB")
    path = tmp_path / "dancer.png"
    Image.blend(image, Image.new("RGB", image.size, (40, 90, 220)), 0.6).save(path)
    return path


def test_images_are_put_in_order_before_sending(page, server, picture):
    subject = make(server, "/api/generate/text-to-image", prompt="a statue in a park", seed=11)
    page.goto(f"/?use={output_ref(subject)}&form=pose")
    page.locator("#pose input[type=file]").set_input_files(str(picture))
    assert roles(page, "pose") == ["Subject", "Pose reference"]
    assert names(page, "pose") == [subject["outputs"][0]["file"], "dancer.png"]
    assert page.locator("#pose input[type=file]").is_disabled()  # two of two
    assert serious_violations(page) == []
    shot(page, "studio-pose-1366")
    page.get_by_role("button", name="Move dancer.png up").focus()
    page.keyboard.press("Enter")
    assert names(page, "pose") == ["dancer.png", subject["outputs"][0]["file"]]
    assert roles(page, "pose") == ["Subject", "Pose reference"]
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == \
        "Move dancer.png down"  # the first has no "up": the focus stays on the item
    made = record(server, submit_and_wait(page, "pose"))
    assert [entry["sha256"] for entry in made["inputImages"]] == [
        hashlib.sha256(picture.read_bytes()).hexdigest(), subject["outputs"][0]["sha256"]]


def test_removing_an_image_and_the_count_checked_before_sending(page, server):
    one = make(server, "/api/generate/text-to-image", prompt="a blue door", seed=5)
    page.goto(f"/?use={output_ref(one)}&form=transition")
    assert roles(page, "transition") == ["First frame"]
    page.get_by_role("button", name=f"Remove {one['outputs'][0]['file']}").click()
    assert roles(page, "transition") == []
    page.locator("#transition form").get_by_role("button", name="Generate").click()
    assert page.locator("#transition .outcome .error").inner_text() == \
        "Choose exactly 2 image(s); 0 chosen."


def test_an_unknown_operation_opens_the_studio_with_a_message(page):
    response = page.goto("/?from=20990101_aaaaaaaaaaaa")
    assert response.status == 404
    assert page.get_by_role("alert").inner_text().startswith(
        "There is no operation '20990101_aaaaaaaaaaaa' to start from")
    assert page.locator("#text-to-image").is_visible()
    assert serious_violations(page) == []


def test_without_javascript_a_stored_image_is_sent_by_reference(browser, server):
    source = make(server, "/api/generate/text-to-image", prompt="a lemon tree", seed=9)
    context = browser.new_context(java_script_enabled=False, base_url=server)
    page = context.new_page()
    page.goto("/")
    page.get_by_role("link", name="Image to image").click()
    page.wait_for_url("**/?form=img-to-img")
    page.goto(f"/?use={output_ref(source)}&form=img-to-img")
    page.locator("#img-to-img textarea").fill("sharper")
    page.locator("#img-to-img").get_by_role("button", name="Generate").click()
    page.wait_for_url("**/history/*")
    made = record(server, page.url.rsplit("/", 1)[1])
    assert made["inputImages"][0]["sha256"] == source["outputs"][0]["sha256"]
    context.close()


def test_phone_width(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server,
                                  is_mobile=True)
    page = context.new_page()
    page.goto("/?form=pose")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "studio-pose-phone", full_page=True)
    context.close()
