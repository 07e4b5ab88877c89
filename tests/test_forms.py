"""The studio's forms (``forms``) and its page's query string: one form shown
at a time, filled from an operation (``?from=``) or with a stored image
(``?use=``), and a clear message, never an error page, for what cannot be
followed."""

import base64
import html
import re

import pytest

from generation_studio import forms, operations

from .conftest import png_bytes


def page(client, url, status=200) -> str:
    response = client.get(url)
    assert response.status_code == status
    return response.get_data(as_text=True)


def shown(text) -> list:
    """The ids of the forms the page shows (not hidden)."""
    return re.findall(r'<section class="card op" id="([\w-]+)" aria-labelledby="[\w-]+" >', text)


def section(text, form_id) -> str:
    start = text.index(f'<section class="card op" id="{form_id}"')
    return text[start:text.index("</section>", start)]


def value_of(text, name) -> str | None:
    """The value a form's field is filled with: an input's, the selected option's, the textarea's."""
    found = (re.search(rf'<textarea id="[\w-]+" name="{name}"[^>]*>(.*?)</textarea>', text, re.S)
             or re.search(rf'<input id="[\w-]+" name="{name}" [^>]*value="([^"]*)"', text)
             or re.search(rf'<select id="[\w-]+" name="{name}".*?<option value="([^"]*)" selected',
                          text, re.S))
    return html.unescape(found.group(1)) if found else None


def stored(text) -> list:
    """The stored images a form is filled with, in order: (hidden value, role)."""
    return re.findall(r'<strong class="role">([^<]+)</strong>.*?name="images" value="([^"]+)"',
                      text, re.S)


def made(client, path, **fields) -> dict:
    answer = client.post(path, json=fields).get_json()
    assert answer["success"] is True, answer
    return client.get(f"/api/history/{answer['operationId']}").get_json()["operation"]


def test_the_studio_shows_the_text_to_image_form_and_a_menu_of_every_form(client):
    text = page(client, "/")
    assert shown(text) == ["text-to-image"]
    assert text.count('class="op-form"') == len(forms.FORMS) == 10
    links = re.findall(r'<a href="/\?form=([\w-]+)" data-form="[\w-]+"', text)
    assert links == [form_id for _, ids in forms.GROUPS for form_id in ids] == \
        [form.id for form in forms.FORMS]


def test_a_form_is_chosen_by_the_query_string(client):
    text = page(client, "/?form=pose")
    assert shown(text) == ["pose"]
    assert 'href="/?form=pose" data-form="pose" aria-current="page"' in text


def test_an_unknown_form_shows_the_studio_with_a_message(client):
    text = page(client, "/?form=nope", 404)
    assert "There is no form &#39;nope&#39;; choose a task from the list." in text
    assert shown(text) == ["text-to-image"]


def test_from_an_operation_fills_its_form_with_prompt_parameters_and_seed(client):
    source = made(client, "/api/generate/text-to-image", prompt="a harbour <b>at</b> night",
                  seed=1234, aspectRatio="16:9", outputFormat="png")
    text = page(client, f"/?from={source['operationId']}")
    assert shown(text) == ["text-to-image"]
    form = section(text, "text-to-image")
    assert value_of(form, "prompt") == "a harbour <b>at</b> night"
    assert "<b>at</b>" not in form  # escaped
    assert (value_of(form, "seed"), value_of(form, "aspectRatio"),
            value_of(form, "outputFormat")) == ("1234", "16:9", "png")
    assert f'data-rerun="/api/history/{source["operationId"]}/rerun"' in form
    # The other forms stay blank.
    assert value_of(section(text, "text-to-video"), "seed") is None


def test_the_seed_drawn_by_the_server_fills_the_form(client):
    source = made(client, "/api/generate/text-to-image", prompt="a cat")
    text = section(page(client, f"/?from={source['operationId']}"), "text-to-image")
    assert value_of(text, "seed") == str(source["task"]["params"]["seed"])


def test_from_an_operation_with_images_lists_its_stored_inputs_in_order(client):
    first, second = png_bytes(colour=(200, 0, 0)), png_bytes(colour=(0, 0, 200))
    source = made(client, "/api/edit/pose", images=[
        "data:image/png;base64," + base64.b64encode(first).decode(),
        "data:image/png;base64," + base64.b64encode(second).decode()])
    text = page(client, f"/?from={source['operationId']}")
    assert shown(text) == ["pose"]
    op_id, files = source["operationId"], [e["file"] for e in source["inputImages"]]
    assert stored(section(text, "pose")) == [("Subject", f"op:{op_id}/{files[0]}"),
                                              ("Pose reference", f"op:{op_id}/{files[1]}")]
    assert f'src="/history/{op_id}/preview/{files[0]}?w=480"' in text  # not the original
    # Stored images are enough: the file input is not required.
    assert re.search(r'<input id="pose-images" name="images" type="file"[^>]* required', text) is None


def test_several_images_for_an_edit_are_numbered(client):
    pictures = ["data:image/png;base64," + base64.b64encode(png_bytes(colour=c)).decode()
                for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    source = made(client, "/api/edit/image", prompt="side by side", images=pictures)
    text = section(page(client, f"/?from={source['operationId']}"), "edit")
    assert [role for role, _ in stored(text)] == ["Image 1", "Image 2", "Image 3"]


def test_an_animation_fills_the_animate_form_not_image_to_video(client):
    picture = "data:image/png;base64," + base64.b64encode(png_bytes(pattern=True)).decode()
    source = made(client, "/api/video-image/animate-image", images=[picture], prompt="slowly",
                  duration=1, fps=2, motion="zoom-out")
    text = page(client, f"/?from={source['operationId']}")
    assert shown(text) == ["animate"]
    assert value_of(section(text, "animate"), "motion") == "zoom-out"


def test_a_workflow_fills_the_workflow_form_with_its_type_and_seed(client):
    source = made(client, "/api/workflow/execute", prompt="a lake, then animate it",
                  duration=1, fps=2)
    text = section(page(client, f"/?from={source['operationId']}"), "workflow")
    assert value_of(text, "workflow") == source["operationType"] == "generate_then_video"
    assert value_of(text, "seed") == str(source["task"]["params"]["seed"])
    assert value_of(text, "prompt") == "a lake, then animate it"


@pytest.mark.parametrize("op_id", ["20990101_aaaaaaaaaaaa", "not-an-id"])
def test_an_unknown_operation_shows_the_studio_with_a_message(client, op_id):
    text = page(client, f"/?from={op_id}", 404)
    assert f"There is no operation &#39;{op_id}&#39; to start from" in text
    assert shown(text) == ["text-to-image"]


def test_use_puts_a_stored_image_first_in_the_form_named(client):
    source = made(client, "/api/generate/text-to-image", prompt="a cat")
    ref = f"op:{source['operationId']}/{source['outputs'][0]['file']}"
    text = page(client, f"/?use={ref}&form=transition")
    assert shown(text) == ["transition"]
    assert stored(section(text, "transition")) == [("First frame", ref)]


@pytest.mark.parametrize("form_id", ["", "text-to-image"])
def test_use_without_a_form_that_takes_images_opens_image_to_image(client, form_id):
    source = made(client, "/api/generate/text-to-image", prompt="a cat")
    ref = f"op:{source['operationId']}/{source['outputs'][0]['file']}"
    text = page(client, f"/?use={ref}&form={form_id}")
    assert shown(text) == ["img-to-img"]
    assert stored(section(text, "img-to-img")) == [("Image", ref)]


@pytest.mark.parametrize("ref", ["op:20990101_aaaaaaaaaaaa/x.png", "20261126_k3j5x2m7qa9b/x.png",
                                 "op:../../etc/passwd"])
def test_use_of_an_unknown_image_shows_the_studio_with_a_message(client, ref):
    text = page(client, f"/?use={ref}&form=img-to-img", 404)
    assert "There is no stored image" in text
    assert stored(text) == []


def test_use_of_a_file_the_operation_does_not_keep_is_refused(client):
    source = made(client, "/api/generate/text-to-image", prompt="a cat")
    text = page(client, f"/?use=op:{source['operationId']}/{source['operationId']}.json", 404)
    assert "There is no stored image" in text


def test_every_form_whose_route_takes_a_seed_shows_it():
    takes_seed = {r.form_id for r in operations.ROUTES if operations.SEED in r.fields} | {"workflow"}
    assert {f.id for f in forms.FORMS if any(x.name == "seed" for x in f.fields)} == takes_seed


def test_images_have_their_roles_where_the_route_gives_them():
    roles = {f.id: f.images.roles for f in forms.FORMS if f.images}
    assert roles["pose"] == ("Subject", "Pose reference")
    assert roles["style"] == ("Content", "Style reference")
    assert roles["transition"] == ("First frame", "Last frame")
    assert roles["img-to-img"] == roles["animate"] == ("Image",)
    assert roles["edit"] == ()  # "Image 1", "Image 2"...
