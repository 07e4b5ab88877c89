"""What the hosted AI providers share: the HTTP rules and the job's life.

A hosted provider (Replicate, fal) submits a job, follows it until it ends or
our deadline passes (then cancels it and fails with 504), downloads the
outputs (``downloads``) and answers a ``Result``. Subclasses say how to build
a model's input and speak their protocol; the rules live here:

- errors (problem details: ``title``, ``detail``, ``status``) become clear
  messages: 401 bad token, 402 billing, 404 unknown model → 502; 422 invalid
  input → 400, with the provider's detail;
- 429: wait ``Retry-After`` (header, or ``retry_after`` in the body) and retry
  a bounded number of times, then 503 with ``Retry-After``;
- GETs are retried on 5xx and connection errors with backoff; a POST that may
  have created a job is never repeated, except after a 429;
- the token goes only to the API's own origin, never into a message.
"""

import math
import os
import time
from urllib.parse import urlsplit

import requests

from ..catalog import makes_video
from . import Provider, Result, Task
from ..errors import ProviderError
from .downloads import download

MAX_ATTEMPTS = 4


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


class HostedProvider(Provider):
    label = "provider"  # how messages name it
    token_setting = ""  # the setting (or environment variable) holding the secret
    api_base_setting = ""
    models_setting = ""
    DEFAULT_MODELS: dict = {}

    def __init__(self, config, store=None):
        super().__init__(config, store)
        self.token = config.get(self.token_setting) or os.environ.get(self.token_setting)
        self.base = config[self.api_base_setting].rstrip("/")
        self.models = {**self.DEFAULT_MODELS, **(config.get(self.models_setting) or {})}
        self.session = requests.Session()  # the API's; downloads use their own

    # What a subclass provides -------------------------------------------------
    def auth_header(self) -> str:
        raise NotImplementedError

    def build(self, task: Task) -> tuple[str, dict]:
        """``(model, input)`` for ``task``."""
        raise NotImplementedError

    def submit(self, model: str, payload: dict, deadline: Deadline) -> dict:
        raise NotImplementedError

    def refresh(self, job: dict) -> dict:
        """The job's new state (``job["done"]`` says if it has ended)."""
        raise NotImplementedError

    def cancel(self, job: dict) -> None:
        raise NotImplementedError

    def finish(self, job: dict) -> tuple[list[str], dict]:
        """Output URLs and details of an ended job, or ProviderError."""
        raise NotImplementedError

    # The job's life -----------------------------------------------------------
    def run(self, task: Task) -> Result:
        model, payload = self.build(task)
        kind = "video" if makes_video(task.operation) else "image"
        job = self.run_job(model, payload, kind)
        urls, details = self.finish(job)
        files = [download(url, self.store, self.config, kind) for url in urls]
        return Result(files=files, urls=urls, model=model, details=details)

    def run_job(self, model: str, payload: dict, kind: str) -> dict:
        self.require_token()
        setting = "PROVIDER_VIDEO_DEADLINE" if kind == "video" else "PROVIDER_IMAGE_DEADLINE"
        deadline = Deadline(self.config[setting])
        job = self.submit(model, payload, deadline)
        interval = self.config["PROVIDER_POLL_INTERVAL"]
        while not job["done"]:
            if deadline.remaining() <= 0:
                self._cancel_quietly(job)
                raise ProviderError(f"{self.label} did not finish {model} within "
                                    f"{deadline.seconds:g} s ({setting}); the job was canceled",
                                    status=504)
            time.sleep(max(0, min(interval, deadline.remaining())))
            interval = min(interval * 1.5, self.config["PROVIDER_POLL_MAX_INTERVAL"])
            job = self.refresh(job)
        return job

    def _cancel_quietly(self, job):
        try:
            self.cancel(job)
        except ProviderError:
            pass  # the deadline error says what matters; the provider's own deadline backs it

    def require_token(self):
        if not self.token:
            raise ProviderError(f"{self.label} needs an API token: set {self.token_setting} in "
                                ".env (see .env.example)")

    # HTTP ----------------------------------------------------------------------
    def call(self, method: str, url: str, *, idempotent: bool, timeout=None, **kwargs) -> dict:
        """One API request under the rules above; returns its JSON body."""
        if urlsplit(url)[:2] != urlsplit(self.base)[:2]:
            raise ProviderError(f"{self.label} pointed at {url.split('?')[0]}, outside its API "
                                "origin; the request was not sent")
        headers = {"Authorization": self.auth_header(), **kwargs.pop("headers", {})}
        timeout = timeout or self.config["PROVIDER_HTTP_TIMEOUT"]
        throttled = failures = 0
        while True:
            try:
                response = self.session.request(method, url, headers=headers, timeout=timeout,
                                                **kwargs)
            except requests.RequestException as e:
                failures += 1
                if idempotent and failures < MAX_ATTEMPTS:
                    self._backoff(failures)
                    continue
                raise ProviderError(f"{self.label} could not be reached ({type(e).__name__})") \
                    from None
            if response.status_code == 429:
                wait = _retry_after(response)
                throttled += 1
                if throttled < MAX_ATTEMPTS:
                    time.sleep(min(wait, self.config["PROVIDER_MAX_RETRY_WAIT"]))
                    continue
                raise ProviderError(f"{self.label} is rate-limiting this account (429) after "
                                    f"{throttled} tries; try again in {math.ceil(wait)} s",
                                    status=503, headers={"Retry-After": str(math.ceil(wait))})
            if response.status_code >= 500 and idempotent and failures + 1 < MAX_ATTEMPTS:
                failures += 1
                self._backoff(failures)
                continue
            if response.status_code >= 400:
                raise self.error_for(response)
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise ProviderError(f"{self.label} answered {response.status_code} with something "
                                    "that is not a JSON object")
            return body

    def _backoff(self, attempt: int):
        time.sleep(self.config["PROVIDER_RETRY_BACKOFF"] * 2 ** (attempt - 1))

    def error_for(self, response) -> ProviderError:
        status = response.status_code
        detail = self.redact(_problem_detail(response))
        what = {
            401: (f"rejected the API token (401 Unauthorized): check {self.token_setting}", 502),
            403: (f"refused access (403 Forbidden): check {self.token_setting}", 502),
            402: ("needs billing set up or credit on the account (402 Payment Required)", 502),
            404: ("does not know this model or resource (404 Not Found)", 502),
            422: ("refused the input (422 Unprocessable Entity)", 400),
            400: ("refused the request (400 Bad Request)", 400),
        }.get(status, (f"answered {status}", 502))
        message = f"{self.label} {what[0]}" + (f": {detail}" if detail else "")
        return ProviderError(message, status=what[1])

    def redact(self, text: str) -> str:
        return text.replace(self.token, "[redacted]") if self.token and text else text


def _retry_after(response) -> float:
    value = response.headers.get("Retry-After")
    if value is None:
        try:
            value = response.json().get("retry_after")
        except (ValueError, AttributeError):
            value = None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 1.0


def _problem_detail(response) -> str:
    """The text of a problem-details (or fal-style ``detail``) error body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if not isinstance(body, dict):
        return str(body)[:200]
    detail = body.get("detail") or body.get("error") or body.get("title") or ""
    if isinstance(detail, list):  # validation errors: [{"loc": [...], "msg": "..."}]
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:]) or 'input'}: {d.get('msg', d)}"
            if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


# Input mapping shared by the providers --------------------------------------
ROLE_PROMPTS = {
    "pose_transfer": "Image 1 is the subject. Image 2 is the pose reference. Show the subject of "
                     "image 1 in the pose of image 2, keeping their identity and clothes.",
    "style_transfer": "Image 1 is the content. Image 2 is the style reference. Render the "
                      "content of image 1 in the style of image 2.",
    "image_edit_multiple": "Images 1 to {n} are the inputs; use them together.",
}


def role_prompt(task: Task) -> str:
    """The prompt for a several-image model, saying what each image is."""
    roles = ROLE_PROMPTS.get(task.operation, "").format(n=len(task.sources))
    return " ".join(part for part in (roles, task.prompt) if part)


def frames(task: Task, low: int, high: int) -> int:
    """duration x fps, within what the model accepts."""
    wanted = round(task.params.get("duration", 5) * task.params.get("fps", 16))
    return max(low, min(high, wanted))


def clamp(value, low, high):
    return max(low, min(high, value))


def without_none(mapping: dict) -> dict:
    return {k: v for k, v in mapping.items() if v is not None}
