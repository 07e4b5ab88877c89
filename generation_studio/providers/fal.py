"""The ``fal`` provider: fal.ai's queue API.

``POST {FAL_QUEUE_BASE}/{model_id}`` (the full id, with its path) with the
raw input object, ``Authorization: Key <key>`` and ``X-Fal-Request-Timeout``
(our deadline) answers ``request_id``, ``status_url``, ``response_url`` and
``cancel_url``, which are used as given: ``status_url`` is followed (202 while
``IN_QUEUE``, with its ``queue_position``, or ``IN_PROGRESS``) until
``COMPLETED``; ``response_url`` then holds the output (file objects with a
``url``) or the error (422: ``detail`` per field); ``PUT cancel_url``
cancels. Input images over ``PROVIDER_INLINE_INPUT_BYTES`` are uploaded to
fal's storage (``POST {FAL_REST_BASE}/storage/upload/initiate``, then ``PUT``
to the ``upload_url`` it gives); smaller ones go as data URLs. An endpoint's
input schema is read from its published OpenAPI (``FAL_SCHEMA_URL``). With
a webhook, the submit carries the ``fal_webhook`` query parameter; fal signs
its calls with ED25519 under the public keys of its JWKS (``FAL_JWKS_URL``,
kept a day), which needs the ``cryptography`` package: without it, fal jobs
are polled only. These three addresses default to fal's own, or to the
queue's origin when ``FAL_QUEUE_BASE`` is not fal's.
"""

from urllib.parse import urlsplit

import requests

from .. import media
from . import webhooks
from .errors import ProviderError, setting
from .hosted import HostedProvider
from .http import ApiClient
from .inputs import frames, role_prompt, without_none
from .outputs import collect
from .schemas import flatten

# Our aspect ratios as fal's FLUX image_size names (others go as width/height).
IMAGE_SIZES = {"1:1": "square_hd", "16:9": "landscape_16_9", "9:16": "portrait_16_9",
               "4:3": "landscape_4_3", "3:4": "portrait_4_3"}
QUEUE = "https://queue.fal.run"
SCHEMA_PATH = "/api/openapi/queue/openapi.json?endpoint_id={model}"
JWKS_PATH = "/.well-known/jwks.json"
OFFICIAL = {"FAL_REST_BASE": "https://rest.fal.ai", "FAL_SCHEMA_URL": "https://fal.ai" + SCHEMA_PATH,
            "FAL_JWKS_URL": "https://rest.alpha.fal.ai" + JWKS_PATH}
RUNNING = ("IN_QUEUE", "IN_PROGRESS")
CANCELED = ("CANCELLATION_REQUESTED", "OK")
JWKS_KEPT_SECONDS = 24 * 3600


class FalProvider(HostedProvider):
    name = "fal"
    label = "fal.ai"
    token_setting = "FAL_KEY"
    api_base_setting = "FAL_QUEUE_BASE"
    models_setting = "FAL_MODELS"
    kept_for = ("as long as the account's fal CDN retention (the request's result stays "
                "at its response_url for 30 days)")
    job_key = "requestId"
    DEFAULT_MODELS = {
        "text_to_image": "fal-ai/flux/schnell",
        "text_to_image_guided": "fal-ai/flux/dev",
        "img_to_img": "fal-ai/flux/dev/image-to-image",
        "image_edit_single": "fal-ai/flux-pro/kontext",
        "image_edit_multiple": "fal-ai/nano-banana/edit",
        "pose_transfer": "fal-ai/nano-banana/edit",
        "style_transfer": "fal-ai/nano-banana/edit",
        "text_to_video": "fal-ai/wan/v2.2-a14b/text-to-video",
        "image_to_video_single": "fal-ai/wan/v2.2-a14b/image-to-video",
        "image_to_video_transition": "fal-ai/kling-video/v2.1/pro/image-to-video",
    }
    FIELDS = {"image_size": "aspectRatio", "aspect_ratio": "aspectRatio", "seed": "seed",
              "output_format": "outputFormat", "guidance_scale": "guidance", "strength": "strength",
              "num_frames": "duration", "frames_per_second": "fps", "duration": "duration",
              "image_url": "image", "image_urls": "images", "tail_image_url": "images"}

    def __init__(self, config, store=None):
        super().__init__(config, store)
        self.rest = ApiClient(self.label, self._beside_queue("FAL_REST_BASE", ""),
                              self.auth_header(), self.token, self.token_setting, config)
        self.schema_url = self._beside_queue("FAL_SCHEMA_URL", SCHEMA_PATH)
        self.jwks_url = self._beside_queue("FAL_JWKS_URL", JWKS_PATH)
        self.webhook_keys = webhooks.Cached(self._fetch_webhook_keys, JWKS_KEPT_SECONDS)

    def _beside_queue(self, name: str, path: str) -> str:
        """A setting, or by default fal's own address, or the queue's origin when the
        queue is not fal's (a proxy, a test double)."""
        if setting(self.config, name):
            return setting(self.config, name)
        if self.base == QUEUE:
            return OFFICIAL[name]
        parts = urlsplit(self.base)
        return f"{parts.scheme}://{parts.netloc}{path}"

    def auth_header(self) -> str:
        return f"Key {self.token}"

    def build(self, task):
        p, op = task.params, task.operation
        fmt = p.get("outputFormat", "jpg")
        images = [media.data_url(data) for data in task.sources]
        if op == "text_to_image":
            key = "text_to_image_guided" if "guidance" in p else "text_to_image"
            return self.models[key], without_none({
                "prompt": task.prompt, "image_size": _image_size(p.get("aspectRatio", "1:1")),
                "seed": p.get("seed"), "guidance_scale": p.get("guidance"), "num_images": 1,
                "output_format": fmt})
        inputs = {
            "img_to_img": lambda: {"prompt": task.prompt, "image_url": images[0],
                                   "strength": p.get("strength"), "seed": p.get("seed"),
                                   "output_format": fmt},
            "image_edit_single": lambda: {"prompt": task.prompt or "Improve this image",
                                          "image_url": images[0], "output_format": fmt},
            "text_to_video": lambda: {"prompt": task.prompt, "num_frames": frames(task),
                                      "frames_per_second": p.get("fps", 16),
                                      "aspect_ratio": p.get("aspectRatio", "16:9"),
                                      "seed": p.get("seed")},
            "image_to_video_single": lambda: {"prompt": task.prompt, "image_url": images[0],
                                              "num_frames": frames(task),
                                              "frames_per_second": p.get("fps", 16)},
            "image_to_video_transition": lambda: {
                "prompt": task.prompt or "A smooth transition", "image_url": images[0],
                "tail_image_url": images[1], "duration": p.get("duration", 5)},
        }
        if op in inputs:
            return self.models[op], without_none(inputs[op]())
        return self.models[op], {"prompt": role_prompt(task), "image_urls": images,
                                 "output_format": fmt}

    def upload(self, data):
        """fal's storage: initiate (with the key), then PUT the bytes to the signed URL."""
        ext, mime = media.sniff(data[:16])
        target = self.rest.call("POST", f"{self.rest.base}/storage/upload/initiate",
                                params={"storage_type": "fal-cdn-v3"},
                                json={"content_type": mime, "file_name": f"input.{ext}"})
        try:
            answer = requests.put(target["upload_url"], data=data, headers={"Content-Type": mime},
                                  timeout=setting(self.config, "PROVIDER_HTTP_TIMEOUT"))
        except requests.RequestException as e:
            raise ProviderError(f"fal.ai storage could not be reached ({type(e).__name__})") \
                from None
        if answer.status_code >= 400:
            raise ProviderError(f"fal.ai storage refused the upload ({answer.status_code})")
        return target["file_url"]

    def fetch_contract(self, model):
        url = self.schema_url.format(model=model)
        answer = requests.get(url, timeout=setting(self.config, "PROVIDER_HTTP_TIMEOUT"))
        answer.raise_for_status()
        doc = answer.json()
        posts = [(path, item["post"]) for path, item in doc["paths"].items() if "post" in item]
        post = dict(posts).get(f"/{model}") or posts[0][1]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        return {"source": url, **flatten(doc, schema)}

    # Protocol --------------------------------------------------------------------
    def submit(self, model, payload, deadline, webhook=None):
        headers = {"X-Fal-Request-Timeout": str(max(1, int(deadline.seconds)))}
        answer = self.api.call("POST", f"{self.base}/{model}", json=payload, headers=headers,
                               params={"fal_webhook": webhook} if webhook else None)
        return {**answer, "status": answer.get("status", "IN_QUEUE"), "done": False}

    def refresh(self, job, deadline):
        state = self.api.call("GET", job["status_url"], deadline=deadline)
        return {**job, **state, "done": state.get("status") not in RUNNING}

    def cancel(self, job, deadline):
        answer = self.api.call("PUT", job["cancel_url"], deadline=deadline, accept=(400, 404))
        return answer.get("status") in CANCELED

    def describe(self, job):
        return without_none({
            "requestId": job.get("request_id"), "status": job.get("status"),
            "inferenceTime": (job.get("metrics") or {}).get("inference_time"),
            "statusUrl": job.get("status_url"), "responseUrl": job.get("response_url"),
            "cancelUrl": job.get("cancel_url")})

    def state(self, job):
        """The job's state as progress: its status, and its place in the queue."""
        waiting = job.get("status") == "IN_QUEUE" and job.get("queue_position") is not None
        return {"status": job.get("status"),
                **({"queuePosition": job["queue_position"]} if waiting else {})}

    def job_from(self, details):
        return {"request_id": details["requestId"], "status": details.get("status"),
                "status_url": details["statusUrl"], "response_url": details["responseUrl"],
                "cancel_url": details["cancelUrl"], "done": False}

    def finish(self, job, deadline):
        if job.get("status") != "COMPLETED":
            raise ProviderError(f"fal.ai request {job.get('request_id')} {job.get('status')}",
                                details=self.describe(job))
        # A 500 here is the model's own failure, not an outage: not retried.
        output = self.api.call("GET", job["response_url"], deadline=deadline,
                               retry_on=(429, 502, 503, 504))
        urls = collect(output)
        if not urls:
            raise ProviderError(f"fal.ai request {job.get('request_id')} completed with no output "
                                "file", details=self.describe(job))
        return urls

    # Webhooks ------------------------------------------------------------------------
    def receives_webhooks(self):
        return webhooks.can_verify_ed25519()

    def verify_webhook(self, headers, body):
        return webhooks.verify_ed25519(self.webhook_keys.get(), headers, body,
                                       setting(self.config, "WEBHOOK_TOLERANCE_SECONDS"))

    def _fetch_webhook_keys(self) -> list[bytes]:
        """fal's public webhook keys (no credentials: the JWKS is public)."""
        url = self.jwks_url
        try:
            answer = requests.get(url, timeout=setting(self.config, "PROVIDER_HTTP_TIMEOUT"))
            answer.raise_for_status()
            keys = webhooks.jwks_keys(answer.json())
        except (requests.RequestException, ValueError, AttributeError) as e:
            raise ProviderError(f"fal.ai's webhook keys could not be read from {url} "
                                f"({type(e).__name__})", status=503) from None
        if not keys:
            raise ProviderError(f"fal.ai's webhook keys at {url} hold no ED25519 key", status=503)
        return keys


def _image_size(ratio: str):
    if ratio in IMAGE_SIZES:
        return IMAGE_SIZES[ratio]
    from .local.render import ASPECT_SIZES
    width, height = ASPECT_SIZES[ratio]
    return {"width": width, "height": height}
