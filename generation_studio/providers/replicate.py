"""The ``replicate`` provider: Replicate's HTTP API for predictions.

``POST {REPLICATE_API_BASE}/models/{owner}/{name}/predictions`` with
``{"input": {...}}``, ``Authorization: Bearer <token>``, ``Prefer: wait=<n>``
(1 to 60) and ``Cancel-After`` (our deadline, at least the documented 5 s);
a prediction not yet terminal is polled at ``urls.get`` until ``succeeded``,
``failed``, ``canceled`` or ``aborted``, and canceled at ``urls.cancel``. A
model given as ``owner/name:version`` goes to ``POST /predictions`` with its
version. Input images over ``PROVIDER_INLINE_INPUT_BYTES`` go through the
Files API (``POST /files``), smaller ones as data URLs. Outputs come as a
URL, a list, an object of URLs or data URIs (``outputs.collect``). A
model's input schema is ``openapi_schema.components.schemas.Input`` of its
latest (or given) version. With a webhook, the prediction is created with
``webhook`` and ``webhook_events_filter: ["completed"]``; its calls are
signed with the account's secret (``GET /webhooks/default/secret``, fetched
once and kept in memory only).
"""

import json
import math

from .. import media
from . import webhooks
from .errors import ProviderError, setting
from .hosted import HostedProvider
from .http import Deadline
from .inputs import adapt, frames, role_prompt, without_none
from .outputs import collect
from .schemas import flatten

TERMINAL = ("succeeded", "failed", "canceled", "aborted")
MIN_CANCEL_AFTER = 5  # seconds: Replicate refuses less
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
    kept_for = "1 hour (Replicate deletes API outputs after an hour)"
    job_key = "predictionId"
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
    FIELDS = {"aspect_ratio": "aspectRatio", "output_format": "outputFormat", "seed": "seed",
              "guidance": "guidance", "prompt_strength": "strength", "num_frames": "duration",
              "frames_per_second": "fps", "duration": "duration", "num_outputs": "numOutputs",
              "image": "image", "input_image": "image", "image_input": "images",
              "start_image": "images", "end_image": "images"}

    def __init__(self, config, store=None):
        super().__init__(config, store)
        self.signing_secret = webhooks.Cached(self._fetch_signing_secret)

    def auth_header(self) -> str:
        return f"Bearer {self.token}"

    # Inputs ----------------------------------------------------------------------
    def build(self, task):
        p, op = task.params, task.operation
        fmt = p.get("outputFormat", "jpg")
        if op == "text_to_image":
            key = "text_to_image_guided" if "guidance" in p else "text_to_image"
            return self.models[key], without_none({
                "prompt": task.prompt, "aspect_ratio": p.get("aspectRatio", "1:1"),
                "seed": p.get("seed"), "output_format": fmt, "guidance": p.get("guidance"),
                "num_outputs": p.get("numOutputs")})
        images = [media.data_url(data) for data in task.sources]
        inputs = {
            "img_to_img": lambda: {"prompt": task.prompt, "image": images[0],
                                   "prompt_strength": p.get("strength"), "seed": p.get("seed"),
                                   "output_format": fmt},
            "image_edit_single": lambda: {"prompt": task.prompt or "Improve this image",
                                          "input_image": images[0], "output_format": fmt},
            "text_to_video": lambda: {"prompt": task.prompt, "num_frames": frames(task),
                                      "frames_per_second": p.get("fps", 16),
                                      "aspect_ratio": p.get("aspectRatio", "16:9"),
                                      "seed": p.get("seed")},
            "image_to_video_single": lambda: {"prompt": task.prompt, "image": images[0],
                                              "num_frames": frames(task),
                                              "frames_per_second": p.get("fps", 16)},
            "image_to_video_transition": lambda: {
                "prompt": task.prompt or "A smooth transition", "start_image": images[0],
                "end_image": images[1], "mode": "pro", "duration": p.get("duration", 5)},
        }
        if op in inputs:
            return self.models[op], without_none(inputs[op]())
        # Several-image edits, pose and style: one multi-image model, told each image's role.
        return self.models[op], {"prompt": role_prompt(task), "image_input": images,
                                 "output_format": fmt}

    def upload(self, data):
        """Replicate's Files API: the file's URL, readable by predictions."""
        ext, mime = media.sniff(data[:16])
        answer = self.api.call("POST", f"{self.base}/files",
                               files={"content": (f"input.{ext}", data, mime)})
        return answer["urls"]["get"]

    def fetch_contract(self, model):
        name, _, version = model.partition(":")
        url = f"{self.base}/models/{name}" + (f"/versions/{version}" if version else "")
        answer = self.api.call("GET", url, deadline=Deadline(
            setting(self.config, "PROVIDER_HTTP_TIMEOUT")))
        doc = answer["openapi_schema"] if version else answer["latest_version"]["openapi_schema"]
        return {"source": url, **flatten(doc, doc["components"]["schemas"]["Input"])}

    # Protocol --------------------------------------------------------------------
    def submit(self, model, payload, deadline, webhook=None):
        wait = int(min(60, max(1, min(setting(self.config, "REPLICATE_WAIT_SECONDS"),
                                      deadline.seconds))))
        headers = {"Prefer": f"wait={wait}",
                   "Cancel-After": go_duration(max(MIN_CANCEL_AFTER, deadline.seconds))}
        if ":" in model:
            url, body = f"{self.base}/predictions", {"version": model.split(":", 1)[1],
                                                     "input": payload}
        else:
            url, body = f"{self.base}/models/{model}/predictions", {"input": payload}
        if webhook:
            body |= {"webhook": webhook, "webhook_events_filter": ["completed"]}
        timeout = (setting(self.config, "PROVIDER_HTTP_TIMEOUT"), wait + 30)
        return self._job(self.api.call("POST", url, json=body, headers=headers, timeout=timeout))

    def refresh(self, job, deadline):
        return self._job(self.api.call("GET", job["urls"]["get"], deadline=deadline))

    def cancel(self, job, deadline):
        answer = self.api.call("POST", job["urls"]["cancel"], deadline=deadline)
        return answer.get("status") in ("canceled", "aborted", "starting", "processing")

    def _job(self, prediction: dict) -> dict:
        pid = prediction.get("id")
        urls = {"get": f"{self.base}/predictions/{pid}",  # documented; when not given
                "cancel": f"{self.base}/predictions/{pid}/cancel", **(prediction.get("urls") or {})}
        return {**prediction, "urls": urls, "done": prediction.get("status") in TERMINAL}

    def describe(self, job):
        urls = job.get("urls") or {}
        return without_none({
            "predictionId": job.get("id"), "version": job.get("version"),
            "status": job.get("status"), "predictTime": (job.get("metrics") or {}).get("predict_time"),
            "statusUrl": urls.get("get"), "cancelUrl": urls.get("cancel"), "webUrl": urls.get("web")})

    def job_from(self, details):
        pid = details["predictionId"]
        return {"id": pid, "version": details.get("version"), "status": details.get("status"),
                "done": False, "urls": {
                    "get": details.get("statusUrl") or f"{self.base}/predictions/{pid}",
                    "cancel": details.get("cancelUrl") or f"{self.base}/predictions/{pid}/cancel"}}

    def finish(self, job, deadline):
        if job["status"] != "succeeded":
            error = self.redact(str(job.get("error") or "")) or "no reason given"
            raise ProviderError(f"Replicate prediction {job.get('id')} {job['status']}: {error}",
                                status=504 if job["status"] == "aborted" else 502,
                                details=self.describe(job))
        urls = collect(job.get("output"))
        if not urls:
            raise ProviderError(f"Replicate prediction {job.get('id')} succeeded with no output "
                                "file", details=self.describe(job))
        return urls

    # Webhooks ------------------------------------------------------------------------
    def verify_webhook(self, headers, body):
        webhooks.verify_standard(self.signing_secret.get(), headers, body,
                                 setting(self.config, "WEBHOOK_TOLERANCE_SECONDS"))
        prediction = webhooks.json_object(body)
        if not isinstance(prediction.get("id"), str):
            raise webhooks.WebhookError("the webhook names no prediction")
        return prediction["id"]

    def _fetch_signing_secret(self) -> str:
        self.require_token()
        answer = self.api.call("GET", f"{self.base}/webhooks/default/secret",
                               deadline=Deadline(setting(self.config, "PROVIDER_HTTP_TIMEOUT")))
        if not str(answer.get("key") or "").startswith("whsec_"):
            raise ProviderError("Replicate gave no webhook signing secret")
        return answer["key"]

    # Workflow planning by a language model ------------------------------------------
    def plan_workflow(self, prompt, image_count):
        from ..catalog import OPERATIONS, WORKFLOWS
        self.require_token()
        model = self.models["workflow_analysis"]
        system = PLANNER_SYSTEM_PROMPT % {"types": ", ".join(WORKFLOWS),
                                          "operations": ", ".join(OPERATIONS),
                                          "count": image_count}
        payload, _ = adapt(model, {"prompt": prompt, "system_prompt": system},
                           self.contracts.get(model), self.FIELDS)
        deadline = Deadline(setting(self.config, "PROVIDER_IMAGE_DEADLINE"))
        job = self.follow(self.submit(model, payload, deadline), deadline, model)
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


def go_duration(seconds: float) -> str:
    """``Cancel-After``'s format: 5 -> ``5s``, 300 -> ``5m``, 3725 -> ``1h2m5s``."""
    seconds = math.ceil(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
