"""The ``replicate`` provider: Replicate's HTTP API for predictions.

``POST {REPLICATE_API_BASE}/models/{owner}/{name}/predictions`` with
``{"input": {...}}``, ``Authorization: Bearer <token>``, ``Prefer: wait=<n>``
and ``Cancel-After``; if the answer is not terminal, ``urls.get`` is polled
until ``succeeded``, ``failed``, ``canceled`` or ``aborted``. A model given as
``owner/name:version`` goes to ``POST /predictions`` with its version. Input
images go as data URLs up to 256 KB, larger ones through ``POST /files``.
"""

import json

from .. import media
from ..errors import ProviderError
from .hosted import HostedProvider, clamp, frames, role_prompt, without_none

TERMINAL = ("succeeded", "failed", "canceled", "aborted")
INLINE_LIMIT = 256 * 1024
OUTPUT_FORMATS = {"jpg": "jpg", "png": "png", "webp": "webp"}
PLANNER_SYSTEM_PROMPT = """You plan image and video generation workflows. Answer with one JSON \
object and nothing else: {"type": T, "reason": "why", "steps": [{"operation": O, "prompt": "...", \
"inputs": ["upload:0" or "step:0", ...]}]}. T is one of %(types)s. O is one of %(operations)s. \
"upload:N" is the N-th uploaded image; "step:N" is the image made by step N. The user uploaded \
%(count)d image(s)."""


class ReplicateProvider(HostedProvider):
    name = "replicate"
    label = "Replicate"
    token_setting = "REPLICATE_API_TOKEN"
    api_base_setting = "REPLICATE_API_BASE"
    models_setting = "REPLICATE_MODELS"
    DEFAULT_MODELS = {
        "text_to_image": "black-forest-labs/flux-schnell",
        "text_to_image_guided": "black-forest-labs/flux-dev",
        "img_to_img": "black-forest-labs/flux-dev",
        "image_edit_single": "black-forest-labs/flux-kontext-pro",
        "image_edit_multiple": "google/nano-banana",
        "pose_transfer": "google/nano-banana",
        "style_transfer": "google/nano-banana",
        "text_to_video": "wan-video/wan-2.2-t2v-fast",
        "image_to_video_single": "wan-video/wan-2.2-i2v-a14b",
        "image_to_video_transition": "kwaivgi/kling-v2.1",
        "workflow_analysis": "openai/gpt-4o-mini",
    }

    def auth_header(self) -> str:
        return f"Bearer {self.token}"

    # Inputs ----------------------------------------------------------------------
    def build(self, task):
        p, op = task.params, task.operation
        fmt = OUTPUT_FORMATS.get(p.get("outputFormat", "jpg"), "jpg")
        if op == "text_to_image":
            key = "text_to_image_guided" if "guidance" in p else "text_to_image"
            return self.models[key], without_none({
                "prompt": task.prompt, "aspect_ratio": p.get("aspectRatio", "1:1"),
                "seed": p.get("seed"), "output_format": fmt, "guidance": p.get("guidance"),
                "num_outputs": p.get("numOutputs")})
        images = [self.image_ref(data) for data in task.sources]
        inputs = {
            "img_to_img": lambda: {"prompt": task.prompt, "image": images[0],
                                   "prompt_strength": p.get("strength"), "seed": p.get("seed"),
                                   "output_format": fmt},
            "image_edit_single": lambda: {"prompt": task.prompt or "Improve this image",
                                          "input_image": images[0],
                                          "output_format": "png" if fmt == "png" else "jpg"},
            "text_to_video": lambda: {"prompt": task.prompt, "num_frames": frames(task, 81, 121),
                                      "frames_per_second": clamp(p.get("fps", 16), 5, 30),
                                      "aspect_ratio": _video_aspect(p), "seed": p.get("seed")},
            "image_to_video_single": lambda: {"prompt": task.prompt, "image": images[0],
                                              "num_frames": frames(task, 81, 100),
                                              "frames_per_second": clamp(p.get("fps", 16), 5, 24)},
            "image_to_video_transition": lambda: {
                "prompt": task.prompt or "A smooth transition", "start_image": images[0],
                "end_image": images[1], "mode": "pro",
                "duration": 10 if p.get("duration", 5) > 7.5 else 5},
        }
        if op in inputs:
            return self.models[op], without_none(inputs[op]())
        # Several-image edits, pose and style: one multi-image model, told each image's role.
        return self.models[op], {"prompt": role_prompt(task), "image_input": images,
                                 "output_format": "png" if fmt == "png" else "jpg"}

    def image_ref(self, data: bytes) -> str:
        """A data URL for a small image; a Replicate file URL for a larger one."""
        if len(data) <= INLINE_LIMIT:
            return media.data_url(data)
        ext, mime = media.sniff(data[:16])
        answer = self.call("POST", f"{self.base}/files", idempotent=False,
                           files={"content": (f"input.{ext}", data, mime)})
        return answer["urls"]["get"]

    # Protocol --------------------------------------------------------------------
    def submit(self, model, payload, deadline):
        wait = int(clamp(self.config["REPLICATE_WAIT_SECONDS"], 1, 60))
        headers = {"Prefer": f"wait={wait}", "Cancel-After": f"{max(1, int(deadline.seconds))}s"}
        if ":" in model:
            url, body = f"{self.base}/predictions", {"version": model.split(":", 1)[1],
                                                     "input": payload}
        else:
            url, body = f"{self.base}/models/{model}/predictions", {"input": payload}
        return self._job(self.call("POST", url, idempotent=False, json=body, headers=headers,
                                   timeout=(self.config["PROVIDER_HTTP_TIMEOUT"], wait + 30)))

    def refresh(self, job):
        return self._job(self.call("GET", job["urls"]["get"], idempotent=True))

    def cancel(self, job):
        self.call("POST", job["urls"]["cancel"], idempotent=False)

    @staticmethod
    def _job(prediction: dict) -> dict:
        return {**prediction, "done": prediction.get("status") in TERMINAL}

    def finish(self, job):
        details = {"predictionId": job.get("id"), "version": job.get("version"),
                   "status": job.get("status"),
                   "predictTime": (job.get("metrics") or {}).get("predict_time")}
        if job["status"] != "succeeded":
            error = self.redact(str(job.get("error") or "")) or "no reason given"
            raise ProviderError(f"Replicate prediction {job.get('id')} {job['status']}: {error}",
                                status=504 if job["status"] == "aborted" else 502)
        output = job.get("output")
        urls = [output] if isinstance(output, str) else [u for u in output or [] if isinstance(u, str)]
        if not urls:
            raise ProviderError(f"Replicate prediction {job.get('id')} succeeded with no output")
        return urls, details

    # Workflow planning by a language model ------------------------------------------
    def plan_workflow(self, prompt, image_count):
        from ..catalog import OPERATIONS, WORKFLOWS
        model = self.models["workflow_analysis"]
        system = PLANNER_SYSTEM_PROMPT % {"types": ", ".join(WORKFLOWS),
                                          "operations": ", ".join(OPERATIONS),
                                          "count": image_count}
        job = self.run_job(model, {"prompt": prompt, "system_prompt": system}, "image")
        if job["status"] != "succeeded":
            raise ValueError(f"{model} {job['status']}")
        output = job.get("output")
        text = "".join(output) if isinstance(output, list) else str(output or "")
        start, end = text.find("{"), text.rfind("}")
        try:
            plan = json.loads(text[start:end + 1])
        except ValueError:
            raise ValueError(f"{model} did not answer JSON") from None
        if isinstance(plan, dict):
            plan["analyzer"] = f"replicate:{model}"
        return plan


def _video_aspect(params) -> str:
    width, height = (int(n) for n in params.get("aspectRatio", "16:9").split(":"))
    return "9:16" if height > width else "16:9"
