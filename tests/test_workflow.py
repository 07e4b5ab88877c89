"""Workflows: the analysis into a plan, its validation, and each step recorded."""

import io

import pytest

from generation_studio import workflow
from generation_studio.errors import ApiError, GenerationError

from .conftest import png_bytes

URL = "/api/workflow/execute"


@pytest.mark.parametrize("prompt, count, expected", [
    ("a castle on a hill", 0, "generate_image"),
    ("a castle, animated", 0, "generate_then_video"),
    ("a castle in sepia", 0, "generate_then_edit"),
    ("make it brighter", 1, "edit_image"),
    ("make it brighter and animate it", 1, "edit_then_video"),
    ("combine them into a video", 3, "edit_then_video"),
    ("a transition between the two", 2, "transition_video"),
    ("paint the first in the style of the second", 2, "style_image"),
    ("the first in the style of the second, as a video", 2, "style_then_video"),
])
def test_rules_detect_the_workflow(prompt, count, expected):
    plan = workflow.rule_plan(prompt, count)
    assert plan["type"] == expected and plan["analyzer"] == "rules" and plan["reason"]
    assert workflow.validate(plan, count) is plan


def test_a_plan_names_its_inputs():
    plan = workflow.rule_plan("sepia and zoom in", 2)
    assert plan["steps"] == [
        {"operation": "image_edit_multiple", "prompt": "sepia and zoom in",
         "inputs": ["upload:0", "upload:1"]},
        {"operation": "image_to_video_single", "prompt": "sepia and zoom in", "inputs": ["step:0"]},
    ]


def test_a_forced_workflow_must_fit_the_images():
    with pytest.raises(ApiError, match="workflow transition_video takes exactly 2 image"):
        workflow.rule_plan("x", 1, forced="transition_video")


@pytest.mark.parametrize("plan, words", [
    ({"type": "dance", "steps": []}, "type is one of"),
    ({"type": "edit_image", "steps": []}, "1 to 5 steps"),
    ({"type": "edit_image", "steps": [{"operation": "paint", "inputs": []}]}, "operation must be"),
    ({"type": "edit_image", "steps": [{"operation": "image_edit_single", "inputs": ["upload:3"]}]},
     "'upload:3' is not an upload"),
    ({"type": "edit_image", "steps": [{"operation": "image_edit_single", "inputs": ["step:0"]}]},
     "'step:0' is not an upload or an earlier"),
    ({"type": "edit_image", "steps": [{"operation": "pose_transfer", "inputs": ["upload:0"]}]},
     "takes 2 to 2 inputs"),
    ({"type": "generate_then_video", "steps": [
        {"operation": "text_to_video", "inputs": []},
        {"operation": "image_to_video_single", "inputs": ["step:0"]}]},
     "'step:0' is not an upload or an earlier image step"),
    ("not a plan", "a plan is an object"),
])
def test_validate_refuses_malformed_plans(plan, words):
    with pytest.raises(ValueError, match=words):
        workflow.validate(plan, 1)


def post(client, fields, uploads=()):
    data = {**fields, "images": [(io.BytesIO(b), f"{n}.png") for n, b in enumerate(uploads)]}
    return client.post(URL, data=data, content_type="multipart/form-data")


def by_id(records):
    return {r["operationId"]: r for r in records()}


def test_edit_then_video_records_the_workflow_and_each_step(client, records, storage_dir):
    upload = png_bytes((80, 60), pattern=True)
    response = post(client, {"prompt": "sepia, then animate", "duration": "1", "fps": "4"}, [upload])
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    ops = by_id(records)
    flow = ops[body["operationId"]]
    assert flow["operationType"] == "edit_then_video" == body["operationType"]
    assert flow["workflowAnalysis"]["type"] == "edit_then_video"
    assert [s["operation"] for s in flow["workflowAnalysis"]["steps"]] == [
        "image_edit_single", "image_to_video_single"]
    assert flow["steps"] == body["steps"] and len(flow["steps"]) == 2
    edit, video = ops[flow["steps"][0]], ops[flow["steps"][1]]
    assert edit["parentId"] == video["parentId"] == flow["operationId"]
    assert (edit["operationType"], video["operationType"]) == ("image_edit_single",
                                                               "image_to_video_single")
    assert edit["provider"]["edits"] == ["sepia"]
    assert video["parameters"] == {"duration": 1, "fps": 4, "videoFormat": "mp4"}
    # The upload goes into the edit, the edit into the video, the video out of the workflow.
    read = lambda name: (storage_dir / name).read_bytes()  # noqa: E731
    assert read(edit["inputImages"][0]["file"]) == upload == read(flow["inputImages"][0]["file"])
    assert read(video["inputImages"][0]["file"]) == read(edit["resultFile"])
    assert read(flow["resultFile"]) == read(video["resultFile"])
    assert flow["outputs"][0]["frames"] == 4


def test_generate_then_video_needs_no_image(client, records):
    body = post(client, {"prompt": "a lighthouse, as a video", "duration": "1", "fps": "2"}).get_json()
    ops = by_id(records)
    assert ops[body["operationId"]]["operationType"] == "generate_then_video"
    assert [ops[i]["operationType"] for i in body["steps"]] == ["text_to_image", "image_to_video_single"]


def test_a_workflow_can_be_forced(client, records):
    uploads = [png_bytes(pattern=True), png_bytes(colour=(0, 0, 200), pattern=True)]
    body = post(client, {"prompt": "anything", "workflow": "transition_video",
                         "duration": "1", "fps": "2"}, uploads).get_json()
    assert body["operationType"] == "transition_video"
    assert body["workflowAnalysis"]["reason"] == "asked for in the request"


@pytest.mark.parametrize("fields, count, words", [
    ({"prompt": "x", "workflow": "transition_video"}, 1, "takes exactly 2 image(s); got 1"),
    ({"prompt": "x", "workflow": "juggle"}, 0, "workflow must be one of generate_image"),
    ({"prompt": ""}, 0, "prompt is required"),
    ({"prompt": "x"}, 6, "workflow edit_image takes 1 to 5 image(s); got 6"),
])
def test_a_request_that_cannot_be_planned(client, records, fields, count, words):
    response = post(client, fields, [png_bytes() for _ in range(count)])
    assert response.status_code == 400 and words in response.get_json()["error"]
    [record] = records()
    assert record["operationType"] == "workflow" and record["status"] == "failed"
    assert len(record["inputImages"]) == count


def test_a_failed_step_fails_the_workflow_and_keeps_the_steps_done(client, app, records):
    provider = app.extensions["generation_provider"]
    real_run = provider.run

    def run(task):
        if task.operation == "image_to_video_single":
            raise GenerationError("the video engine is out of film")
        return real_run(task)

    provider.run = run
    response = post(client, {"prompt": "brighter, then animate", "duration": "1"},
                    [png_bytes(pattern=True)])
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error == ("Workflow step 2 of 2 (image_to_video_single) failed: "
                     "the video engine is out of film")
    ops = by_id(records)
    flow = ops[response.get_json()["operationId"]]
    assert flow["status"] == "failed" and flow["error"] == error
    assert flow["operationType"] == "edit_then_video" and flow["workflowAnalysis"]["type"]
    edit, video = (ops[i] for i in flow["steps"])
    assert edit["status"] == "succeeded" and edit["resultFile"]
    assert video["status"] == "failed" and video["error"] == "the video engine is out of film"
    assert video["inputImages"][0]["sha256"] == edit["outputs"][0]["sha256"]


def test_history_filters_by_workflow_type(client):
    post(client, {"prompt": "a castle"})
    body = client.get("/api/history?type=generate_image").get_json()
    assert body["total"] == 1 and body["operations"][0]["steps"]


def test_a_workflow_video_step_takes_the_video_format(client, records):
    answer = client.post("/api/workflow/execute", json={
        "prompt": "a harbour, then animate it", "duration": 1, "fps": 2, "videoFormat": "gif"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["resultUrl"].endswith("_out.gif")
