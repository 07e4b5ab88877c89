"""Run again and use as input: a rerun makes the same bytes, overrides change
one field, stored files chain by reference, and lineage links both ways."""

import base64
import hashlib

import pytest

from .conftest import png_bytes
from .test_routes import CASES, IDS, images


def create(client, url, fields, count):
    urls = [f"data:image/png;base64,{base64.b64encode(b).decode()}" for b in images(count)]
    answer = client.post(url, json={**fields, **({"images": urls} if count else {})})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["operationId"]


def record(client, op_id):
    body = client.get(f"/api/history/{op_id}").get_json()
    return body["operation"]


def output_bytes(client, op_id) -> bytes:
    rec = record(client, op_id)
    assert rec["status"] == "succeeded", rec.get("error")
    return client.get(f"/api/history/{op_id}/files/{rec['outputs'][0]['file']}").data


@pytest.mark.parametrize("url, op_type, count, fields, frames", CASES, ids=IDS)
def test_a_rerun_makes_the_same_bytes(client, url, op_type, count, fields, frames):
    first = create(client, url, fields, count)
    answer = client.post(f"/api/history/{first}/rerun")
    assert answer.status_code == 200, answer.get_json()
    second = answer.get_json()["operationId"]
    assert second != first
    again = record(client, second)
    assert again["operationType"] == op_type
    assert again["derivedFrom"] == [{"operationId": first, "file": None, "relation": "rerun"}]
    assert hashlib.sha256(output_bytes(client, second)).hexdigest() == \
        hashlib.sha256(output_bytes(client, first)).hexdigest()
    assert [i["sha256"] for i in again["inputImages"]] == \
        [i["sha256"] for i in record(client, first)["inputImages"]]


def test_a_text_to_image_without_a_seed_reruns_with_the_seed_it_drew(client):
    first = create(client, "/api/generate/text-to-image", {"prompt": "a red fox"}, 0)
    seed = record(client, first)["task"]["params"]["seed"]
    second = client.post(f"/api/history/{first}/rerun").get_json()["operationId"]
    assert record(client, second)["task"]["params"]["seed"] == seed
    assert output_bytes(client, second) == output_bytes(client, first)


def test_an_override_changes_that_field_and_keeps_the_others(client):
    first = create(client, "/api/generate/text-to-image",
                   {"prompt": "a red fox", "seed": 7, "aspectRatio": "16:9"}, 0)
    answer = client.post(f"/api/history/{first}/rerun", json={"prompt": "a blue fox"})
    second = record(client, answer.get_json()["operationId"])
    assert second["prompt"] == "a blue fox"
    assert second["task"]["params"]["seed"] == 7
    assert second["task"]["params"]["aspectRatio"] == "16:9"
    assert second["derivedFrom"][0]["operationId"] == first


def test_seed_random_draws_a_new_seed(client):
    first = create(client, "/api/generate/text-to-image", {"prompt": "a red fox", "seed": 7}, 0)
    seeds = {record(client, client.post(f"/api/history/{first}/rerun", json={"seed": "random"})
                    .get_json()["operationId"])["task"]["params"]["seed"] for _ in range(3)}
    assert 7 not in seeds and len(seeds) == 3


def test_a_bad_override_is_refused_like_the_route_refuses_it(client):
    first = create(client, "/api/generate/text-to-image", {"prompt": "a red fox"}, 0)
    answer = client.post(f"/api/history/{first}/rerun", json={"seed": -4})
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "seed"
    refused = record(client, answer.get_json()["operationId"])
    assert refused["status"] == "failed"
    assert refused["derivedFrom"][0]["operationId"] == first


def test_a_rerun_body_must_be_an_object(client):
    first = create(client, "/api/generate/text-to-image", {"prompt": "a red fox"}, 0)
    assert client.post(f"/api/history/{first}/rerun", json=[1]).status_code == 400
    assert client.post(f"/api/history/{first}/rerun", data=b"{nope",
                       content_type="application/json").status_code == 400
    assert client.post("/api/history/20261126_nosuchopxyz/rerun").status_code == 404


def test_a_rerun_can_answer_at_once(client):
    first = create(client, "/api/generate/text-to-image", {"prompt": "a red fox"}, 0)
    answer = client.post(f"/api/history/{first}/rerun", headers={"Prefer": "respond-async"})
    assert answer.status_code == 202
    assert answer.headers["Location"] == f"/api/history/{answer.get_json()['operationId']}"


def test_a_workflow_reruns_as_a_workflow_with_its_steps(client):
    first = create(client, "/api/workflow/execute",
                   {"prompt": "a castle, then make it sepia", "seed": 3}, 0)
    original = record(client, first)
    second = client.post(f"/api/history/{first}/rerun").get_json()["operationId"]
    again = record(client, second)
    assert again["operationType"] == original["operationType"] == "generate_then_edit"
    assert len(again["steps"]) == len(original["steps"]) == 2
    assert output_bytes(client, second) == output_bytes(client, first)


def test_three_routes_chain_by_reference_and_lineage_links_both_ways(client):
    made = create(client, "/api/generate/text-to-image", {"prompt": "a tower", "seed": 1}, 0)
    out = record(client, made)["outputs"][0]["file"]
    answer = client.post("/api/generate/img-to-img",
                         json={"prompt": "sepia", "images": [f"op:{made}/{out}"]})
    assert answer.status_code == 200
    second = answer.get_json()["operationId"]
    second_record = record(client, second)
    assert second_record["derivedFrom"] == [
        {"operationId": made, "file": out, "relation": "input"}]
    # The input kept is the very file referenced.
    stored = client.get(f"/api/history/{second}/files/"
                        f"{second_record['inputImages'][0]['file']}").data
    assert stored == output_bytes(client, made)
    out2 = second_record["outputs"][0]["file"]
    third = client.post("/api/video-image/animate-image",  # a form post, as the studio's
                        data={"prompt": "zoom", "duration": "1", "fps": "2",
                              "images": f"op:{second}/{out2}"})
    assert third.status_code == 200, third.get_json()
    used = client.get(f"/api/history/{made}").get_json()["usedBy"]
    assert [(u["operationId"], u["relation"], u["file"]) for u in used] == [(second, "input", out)]
    used = client.get(f"/api/history/{second}").get_json()["usedBy"]
    assert [u["operationId"] for u in used] == [third.get_json()["operationId"]]


@pytest.mark.parametrize("reference", [
    "op:20261126_nosuchopxyz/_out_0.png",  # no such operation
    "op:{made}/../../etc/passwd",
    "op:{made}/{other}",  # another operation's file
    "op:{made}",
    "op:not-an-id/x.png",
])
def test_an_unknown_or_foreign_reference_is_a_400_naming_the_field(client, reference):
    made = create(client, "/api/generate/text-to-image", {"prompt": "a tower"}, 0)
    other = create(client, "/api/generate/text-to-image", {"prompt": "a bridge"}, 0)
    other_file = record(client, other)["outputs"][0]["file"]
    answer = client.post("/api/edit/image", json={
        "prompt": "grayscale", "images": [f"data:image/png;base64,"
                                          f"{base64.b64encode(png_bytes()).decode()}",
                                          reference.format(made=made, other=other_file)]})
    assert answer.status_code == 400
    assert answer.get_json()["field"] == "images[1]"


def test_the_rerun_page_button_opens_the_new_operation(app, client):
    first = create(client, "/api/generate/text-to-image", {"prompt": "a red fox", "seed": 2}, 0)
    with client.session_transaction() as session:
        session["csrf"] = "token"
    answer = client.post(f"/history/{first}/rerun", data={"csrf_token": "token"},
                         headers={"Accept": "text/html"})
    assert answer.status_code == 303
    second = answer.headers["Location"].rsplit("/", 1)[1]
    app.extensions["jobs"].wait(second, 30)  # the page follows it live; the test waits
    assert record(client, second)["derivedFrom"][0] == {
        "operationId": first, "file": None, "relation": "rerun"}
    assert output_bytes(client, second) == output_bytes(client, first)
