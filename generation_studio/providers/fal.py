"""The ``fal`` provider: fal.ai's queue API.

``POST {FAL_QUEUE_BASE}/{model_id}`` with the raw input object and
``Authorization: Key <key>`` answers ``request_id``, ``status_url``,
``response_url`` and ``cancel_url``; ``status_url`` is followed (202 while
``IN_QUEUE`` or ``IN_PROGRESS``) until ``COMPLETED``, then ``response_url``
holds the output (``images[].url``, ``image.url`` or ``video.url``) or the
error. ``PUT cancel_url`` cancels. Input images go as data URLs.
"""

from .. import media
from ..errors import ProviderError
from .hosted import HostedProvider, clamp, frames, role_prompt, without_none

# Our aspect ratios as fal's FLUX image_size names (others go as width/height).
IMAGE_SIZES = {"1:1": "square_hd", "16:9": "landscape_16_9", "9:16": "portrait_16_9",
               "4:3": "landscape_4_3", "3:4": "portrait_4_3"}


class FalProvider(HostedProvider):
    name = "fal"
    label = "fal.ai"
    token_setting = "FAL_KEY"
    api_base_setting = "FAL_QUEUE_BASE"
    models_setting = "FAL_MODELS"
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

    def auth_header(self) -> str:
        return f"Key {self.token}"

    def build(self, task):
        p, op = task.params, task.operation
        fmt = "png" if p.get("outputFormat") == "png" else "jpeg"
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
            "text_to_video": lambda: {"prompt": task.prompt, "num_frames": frames(task, 17, 161),
                                      "frames_per_second": clamp(p.get("fps", 16), 4, 60),
                                      "aspect_ratio": p.get("aspectRatio", "16:9"),
                                      "seed": p.get("seed")},
            "image_to_video_single": lambda: {"prompt": task.prompt, "image_url": images[0],
                                              "num_frames": frames(task, 17, 161),
                                              "frames_per_second": clamp(p.get("fps", 16), 4, 60)},
            "image_to_video_transition": lambda: {
                "prompt": task.prompt or "A smooth transition", "image_url": images[0],
                "tail_image_url": images[1], "duration": "10" if p.get("duration", 5) > 7.5 else "5"},
        }
        if op in inputs:
            return self.models[op], without_none(inputs[op]())
        return self.models[op], {"prompt": role_prompt(task), "image_urls": images,
                                 "output_format": fmt}

    def submit(self, model, payload, deadline):
        answer = self.call("POST", f"{self.base}/{model}", idempotent=False, json=payload)
        return {**answer, "status": "IN_QUEUE", "done": False}

    def refresh(self, job):
        state = self.call("GET", job["status_url"], idempotent=True)
        return {**job, **state, "done": state.get("status") in ("COMPLETED", "FAILED", "CANCELED")}

    def cancel(self, job):
        self.call("PUT", job["cancel_url"], idempotent=False)

    def finish(self, job):
        details = {"requestId": job.get("request_id"), "status": job.get("status"),
                   "inferenceTime": (job.get("metrics") or {}).get("inference_time")}
        if job.get("status") != "COMPLETED":
            raise ProviderError(f"fal.ai request {job.get('request_id')} {job.get('status')}")
        output = self.call("GET", job["response_url"], idempotent=True)
        found = [i.get("url") for i in output.get("images") or []] + [
            (output.get(key) or {}).get("url") for key in ("image", "video")]
        urls = [u for u in found if isinstance(u, str)]
        if not urls:
            raise ProviderError(f"fal.ai request {job.get('request_id')} completed with no output")
        return urls, details


def _image_size(ratio: str):
    if ratio in IMAGE_SIZES:
        return IMAGE_SIZES[ratio]
    from .local.render import ASPECT_SIZES
    width, height = ASPECT_SIZES[ratio]
    return {"width": width, "height": height}
