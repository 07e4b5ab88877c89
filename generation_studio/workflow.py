"""Multi-step workflows: a request analysed into a plan, then run step by step.

A plan is plain JSON, so that a language model can fill it as well as the
rules below do::

    {"type": "edit_then_video", "analyzer": "rules",
     "reason": "1 image and the words 'animate' ask for an edit, then a video",
     "steps": [{"operation": "image_edit_single", "prompt": "...", "inputs": ["upload:0"]},
               {"operation": "image_to_video_single", "prompt": "...", "inputs": ["step:0"]}]}

An input is ``upload:N`` (the N-th uploaded image) or ``step:N`` (the image
step N made). ``validate`` checks any plan against that shape; ``execute``
runs one as a job: each step is recorded as an operation of its own under the
workflow's id as soon as it ends, and a workflow taken up again after a
restart goes on from the first step not yet done.
"""

import re
from datetime import datetime, timezone

from flask import g

from . import inputs, media
from .catalog import OPERATIONS, WORKFLOWS, image_limits, makes_video
from .errors import ApiError, GenerationError, OperationCanceled, ProviderError, describe
from .history.filters import iso
from .providers import Result, Task, current_provider

MAX_IMAGES = 5
MAX_STEPS = 5
VIDEO_WORDS = {"video", "animate", "animated", "animation", "motion", "move", "moving",
               "zoom", "pan", "clip", "movie", "film"}
EDIT_WORDS = {"edit", "grayscale", "greyscale", "sepia", "blur", "sharpen", "invert", "brighter",
              "darker", "contrast", "vivid", "mirror", "flip", "rotate", "vintage", "negative"}
TRANSITION_WORDS = {"transition", "morph", "fade", "between", "crossfade"}
STYLE_WORDS = {"style", "styled", "palette"}
# Which of the request's parameters each step takes.
STEP_PARAMS = {
    "text_to_image": ("aspectRatio", "seed", "outputFormat"),
    "img_to_img": ("seed", "outputFormat"),
    "image_edit_single": ("outputFormat",),
    "image_edit_multiple": ("outputFormat",),
    "pose_transfer": ("outputFormat",),
    "style_transfer": ("outputFormat",),
    "text_to_video": ("duration", "fps", "aspectRatio", "seed", "videoFormat"),
    "image_to_video_single": ("duration", "fps", "videoFormat"),
    "image_to_video_transition": ("duration", "fps", "videoFormat"),
}
# Each workflow: (images it takes, its steps as (operation, inputs)).
# "image_edit" becomes single or multiple by the count; "uploads" is every upload.
TEMPLATES = {
    "generate_image": ((0, 0), [("text_to_image", [])]),
    "generate_then_edit": ((0, 0), [("text_to_image", []), ("image_edit_single", ["step:0"])]),
    "generate_then_video": ((0, 0), [("text_to_image", []),
                                     ("image_to_video_single", ["step:0"])]),
    "edit_image": ((1, MAX_IMAGES), [("image_edit", ["uploads"])]),
    "edit_then_video": ((1, MAX_IMAGES), [("image_edit", ["uploads"]),
                                          ("image_to_video_single", ["step:0"])]),
    "style_image": ((2, 2), [("style_transfer", ["upload:0", "upload:1"])]),
    "style_then_video": ((2, 2), [("style_transfer", ["upload:0", "upload:1"]),
                                  ("image_to_video_single", ["step:0"])]),
    "transition_video": ((2, 2), [("image_to_video_transition", ["upload:0", "upload:1"])]),
}
assert set(TEMPLATES) == set(WORKFLOWS)


class WorkflowStepError(GenerationError):
    """A step failed: the workflow fails, naming it; the steps so far are kept."""

    def __init__(self, index: int, plan: dict, cause: Exception):
        message, status = describe(cause)
        operation = plan["steps"][index]["operation"]
        super().__init__(f"Workflow step {index + 1} of {len(plan['steps'])} ({operation}) "
                         f"failed: {message}", status=status)
        self.analysis = plan


def detect(prompt: str, count: int) -> tuple[str, str]:
    """The workflow type the rules see in the prompt and image count, and why."""
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    video = sorted(words & VIDEO_WORDS)
    if count == 0:
        if video:
            return "generate_then_video", f"no image, and the words {video} ask for a video"
        edits = sorted(words & EDIT_WORDS)
        if edits:
            return "generate_then_edit", f"no image, and the words {edits} ask for an edit"
        return "generate_image", "no image and no video or edit words: a picture"
    if count == 2 and words & TRANSITION_WORDS:
        return "transition_video", f"2 images and the words {sorted(words & TRANSITION_WORDS)}"
    if count == 2 and words & STYLE_WORDS:
        kind = "style_then_video" if video else "style_image"
        return kind, f"2 images and the words {sorted(words & (STYLE_WORDS | set(video)))}"
    if video:
        return "edit_then_video", f"{count} image(s) and the words {video}: an edit, then a video"
    return "edit_image", f"{count} image(s) and no video words: an edit"


def rule_plan(prompt: str, count: int, forced: str | None = None) -> dict:
    """A plan by the rules, or for the ``forced`` workflow type."""
    kind, reason = (forced, "asked for in the request") if forced else detect(prompt, count)
    (low, high), template = TEMPLATES[kind]
    if not low <= count <= high:
        wanted = f"exactly {low}" if low == high else f"{low} to {high}"
        raise ApiError(f"workflow {kind} takes {wanted} image(s); got {count}", field="images")
    steps = []
    for operation, refs in template:
        if operation == "image_edit":
            operation = "image_edit_multiple" if count > 1 else "image_edit_single"
        refs = [f"upload:{n}" for n in range(count)] if refs == ["uploads"] else refs
        steps.append({"operation": operation, "prompt": prompt, "inputs": refs})
    return {"type": kind, "analyzer": "rules", "reason": reason, "steps": steps}


def validate(plan, count: int) -> dict:
    """``plan`` if it has a plan's shape and can run on ``count`` uploads, else ValueError."""
    if not isinstance(plan, dict) or plan.get("type") not in WORKFLOWS:
        raise ValueError(f"a plan is an object whose type is one of {', '.join(WORKFLOWS)}")
    steps = plan.get("steps")
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise ValueError(f"a plan has 1 to {MAX_STEPS} steps")
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("operation") not in OPERATIONS:
            raise ValueError(f"step {index}: operation must be one of {', '.join(OPERATIONS)}")
        if not isinstance(step.get("prompt", ""), str):
            raise ValueError(f"step {index}: prompt must be text")
        refs = step.get("inputs", [])
        low, high = image_limits(step["operation"])
        if not isinstance(refs, list) or not low <= len(refs) <= high:
            raise ValueError(f"step {index}: {step['operation']} takes {low} to {high} inputs")
        for ref in refs:
            source, _, number = str(ref).partition(":")
            valid = number.isdigit() and (
                (source == "upload" and int(number) < count)
                or (source == "step" and int(number) < index
                    and not makes_video(steps[int(number)]["operation"])))
            if not valid:
                raise ValueError(f"step {index}: input {ref!r} is not an upload or an earlier "
                                 "image step")
    return plan


def plan_for_request() -> dict:
    """The current request's plan, made once (the decorator needs its type first).

    The provider's language model plans when it has one; an unusable answer
    falls back to the rules, and the plan says so.
    """
    if "workflow_plan" not in g:
        prompt, count = inputs.prompt(), len(inputs.current().uploads)
        forced = inputs.choice("workflow", WORKFLOWS)
        g.workflow_plan = (None if forced else _model_plan(prompt, count)) \
            or rule_plan(prompt, count, forced)
        validate(g.workflow_plan, count)
    return g.workflow_plan


def _model_plan(prompt: str, count: int) -> dict | None:
    try:
        plan = current_provider().plan_workflow(prompt, count)
        return plan and validate(plan, count)
    except (ValueError, ProviderError) as e:
        plan = rule_plan(prompt, count)
        plan["fallback"] = f"the language model's plan was unusable ({e}); rules used instead"
        return plan


def run(plan: dict, uploads: list, params: dict, provider, history, parent: dict,
        on_job=None, on_progress=None) -> Result:
    """Run the plan's steps in order, each recorded as its own operation (the
    ids in the parent's ``steps``) as soon as it ends. A step already recorded
    as succeeded (a workflow taken up again after a restart) is not run again:
    its output feeds the next step. A failed step raises WorkflowStepError.

    ``uploads`` are the workflow's input images as ``(bytes, original name)``;
    with no ``history`` (nothing can be kept) the steps run unrecorded.
    """
    from .jobs import recordkeeping  # the job layer builds records; it imports this module

    count, outputs, last = len(plan["steps"]), {}, None
    for index, spec in enumerate(plan["steps"]):
        step_id = parent["steps"][index] if parent else None
        done = history.get(step_id) if history else None
        if done is not None and done["status"] == "succeeded" and done["outputs"]:
            outputs[index] = history.read_file(step_id, done["outputs"][0]["file"])
            continue
        pairs = [_input(ref, uploads, outputs) for ref in spec["inputs"]]
        operation = spec["operation"]
        step_params = {k: params[k] for k in STEP_PARAMS[operation] if k in params}
        started = datetime.now(timezone.utc)
        record = recordkeeping.accepted(operation, started, {"prompt": spec.get("prompt", ""),
                                                            **step_params},
                                        {"operation": operation, "params": step_params},
                                        provider.name)
        record.update(operationId=step_id, parentId=parent and parent["operationId"],
                      startedAt=iso(started))

        def progress(state, index=index):
            if on_progress:
                share = {"progress": (index + state["progress"]) / count} \
                    if "progress" in state else {}
                on_progress({**state, **share, "step": index + 1})

        task = Task(operation, spec.get("prompt", ""), step_params,
                    [media.decode_rgb(data) for data, _ in pairs], [data for data, _ in pairs],
                    on_job=on_job, on_progress=progress)
        try:
            last = provider.run(task)
        except OperationCanceled:
            raise
        except Exception as exc:
            _save_step(history, record, recordkeeping.failed(exc), pairs)
            raise WorkflowStepError(index, plan, exc) from exc
        outputs[index] = media.load(last.files[0]) if last.files else b""
        _save_step(history, record, recordkeeping.succeeded(last), pairs, last.files)
        progress({"progress": 1.0})
    final = outputs[count - 1]
    return Result(files=[final] if final else [], urls=last.urls if last else [],
                  model=last.model if last else None, details={"steps": count}, analysis=plan)


def _save_step(history, record: dict, outcome: dict, pairs, files=()) -> None:
    if history is None:
        return
    ended = datetime.now(timezone.utc)
    record = {**record, **outcome, "provider": {**record["provider"], **outcome.get("provider", {})},
              "completedAt": iso(ended),
              "durationMs": round((ended - datetime.fromisoformat(
                  record["startedAt"].replace("Z", "+00:00"))).total_seconds() * 1000, 1)}
    history.save(record, [(data, name) for data, name in pairs], list(files))


def _input(ref: str, uploads: list, outputs: dict):
    """``(bytes, original name)`` for an input reference of a plan."""
    source, _, number = ref.partition(":")
    if source == "upload":
        return uploads[int(number)]
    return outputs[int(number)], None
