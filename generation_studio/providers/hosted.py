"""What the hosted AI providers share: a paid job's life, from input to kept result.

``run(task)``: build the model's input (the subclass), fit and check it
against the model's contract (``inputs.adapt``, before anything is sent or
billed), upload large input images, submit the job once, hand its id and
URLs to ``task.on_job`` before any polling, follow it until it ends, keep
its outputs (``outputs``). ``resume(task, details)`` follows a job created
earlier, from the details ``on_job`` was given, and never creates another.

With ``PUBLIC_URL`` set, the job is created with the provider's webhook
(``webhooks``) for its operation (``task.operation_id``): polling then only
backs it up, slowly, and the job's webhook wakes the loop at once, which
fetches the job from the API as a poll would (a webhook's body is never
taken for the result).

A job is never abandoned: status outages are retried until the deadline
(``http``); when the studio gives up while the job may still run (the
deadline, an answer it cannot use, a callback that raises because the
operation was canceled), it cancels the job and says so
(``details["canceled"]``). Every failure carries the job's ``details``.
"""

import contextlib
import logging
import os
import time
from datetime import datetime, timedelta, timezone

from .. import errors, media
from ..catalog import makes_video
from . import Provider, Result, Task, webhooks
from .contracts import Contracts
from .errors import MALFORMED, ProviderError, annotate, malformed, setting
from .http import ApiClient, Deadline
from .inputs import adapt
from .outputs import data_bytes, keep, shown

log = logging.getLogger(__name__)
FORMAT_NAMES = {"jpeg": "jpg"}


class HostedProvider(Provider):
    label = "provider"  # how messages name it
    token_setting = api_base_setting = models_setting = ""
    DEFAULT_MODELS: dict = {}
    FIELDS: dict = {}  # model input -> the studio's field, for messages
    kept_for = "a while"  # how long the provider keeps a result
    job_key = ""  # the job's id among ``describe``'s details

    def __init__(self, config, store=None):
        super().__init__(config, store)
        self.token = config.get(self.token_setting) or os.environ.get(self.token_setting)
        self.api = ApiClient(self.label, config[self.api_base_setting], self.auth_header(),
                             self.token, self.token_setting, config, self.FIELDS)
        self.base = self.api.base
        self.models = {**self.DEFAULT_MODELS, **(config.get(self.models_setting) or {})}
        self.contracts = Contracts(self.name, setting(config, "PROVIDER_SCHEMA_DIR"),
                                   self.fetch_contract)
        self.arrivals = webhooks.Arrivals(os.path.join(config["STORAGE_DIR"], ".webhooks"))

    # What a subclass provides --------------------------------------------------
    def auth_header(self) -> str: ...
    def build(self, task: Task) -> tuple[str, dict]: ...  # (model, input); images as data URLs
    def upload(self, data: bytes) -> str: ...  # a URL the model can read the image from
    def submit(self, model: str, payload: dict, deadline: Deadline,
               webhook: str | None = None) -> dict: ...  # called back at ``webhook`` once ended
    def refresh(self, job: dict, deadline: Deadline) -> dict: ...  # job["done"]: it has ended
    def cancel(self, job: dict, deadline: Deadline) -> bool: ...  # False: it had already ended
    def finish(self, job: dict, deadline: Deadline) -> list[str]: ...  # outputs, or ProviderError
    def describe(self, job: dict) -> dict: ...  # the record's details: id, status, URLs
    def job_from(self, details: dict) -> dict: ...  # the job ``describe`` described
    def fetch_contract(self, model: str) -> dict | None: ...  # a published input schema
    def verify_webhook(self, headers, body: bytes) -> str: ...  # the job id it vouches for
    # (or ``webhooks.SignatureRefused``)

    def receives_webhooks(self) -> bool:
        """Whether this provider's webhooks can be verified here."""
        return True

    def webhook_for(self, task: Task) -> str | None:
        """Where the provider should call when ``task``'s job ends, if anywhere."""
        if not self.receives_webhooks():
            return None
        return webhooks.address(self.config, self.name, operation_of(task))

    def state(self, job: dict) -> dict:
        """The job's state, as ``task.on_progress`` is told it."""
        return {"status": job.get("status")}

    # The job's life ------------------------------------------------------------
    def run(self, task: Task) -> Result:
        self.require_token()
        model, payload = self.build(task)
        payload, warnings = adapt(model, payload, self.contracts.get(model), self.FIELDS)
        deadline = self.deadline(task)
        webhook = self.webhook_for(task)
        try:
            payload = {k: self._place(v) for k, v in payload.items()}
            job = self.submit(model, payload, deadline, webhook)
        except errors.ProviderError as e:  # no job was made (or none we can know of)
            annotate(e, {"model": model}, warnings)
            raise
        except MALFORMED as e:  # an answer of another shape than documented: 502
            raise annotate(malformed(self.label, e), {"model": model}, warnings) from None
        return self._complete(task, model, job, deadline, warnings, payload.get("output_format"),
                              webhook=webhook)

    def resume(self, task: Task, details: dict) -> Result:
        self.require_token()
        model = details.get("model") or self.models.get(task.operation)
        job, deadline = self.job_from(details), self.deadline(task, details.get("deadlineAt"))
        first = Deadline(max(deadline.remaining(), setting(self.config, "PROVIDER_CANCEL_TIMEOUT")))
        job = self._step(job, first, model)
        return self._complete(task, model, job, deadline, [], None, notify=False,
                              webhook=details.get("webhookUrl"))

    def _complete(self, task, model, job, deadline, warnings, sent_format, notify=True,
                  webhook=None) -> Result:
        details = {"model": model, **self.describe(job), "deadlineAt": _iso(deadline),
                   **({"webhookUrl": webhook} if webhook else {})}
        kind = "video" if makes_video(task.operation) else "image"
        with self._expecting(operation_of(task) if webhook else None):
            if notify:
                self._tell(task.on_job, dict(details), job)
            try:
                job = self.follow(job, deadline, model, task, webhook)
                # A job that ended just in time still gets its result fetched.
                last = Deadline(max(deadline.remaining(), setting(self.config,
                                                                  "PROVIDER_CANCEL_TIMEOUT")))
                urls = self.finish(job, last)
                files = keep(urls, self.store, self.config, kind, self.kept_for, last)
            except MALFORMED as e:  # an ended job whose outputs are not as documented
                try:
                    self.give_up(job, malformed(self.label, e).message, 502)
                except errors.ProviderError as failed:
                    raise annotate(failed, {**details, **self.describe(job)}, warnings) from None
            except errors.ProviderError as e:  # the job's, or a download's
                annotate(e, {**details, **self.describe(job)}, warnings)
                raise
        warnings += _format_warning(task, model, files, sent_format)
        return Result(files=files, urls=shown(urls), model=model, details=self.describe(job),
                      warnings=warnings)

    @contextlib.contextmanager
    def _expecting(self, op_id: str | None):
        """While following the job of ``op_id``, its webhook wakes the loop (from
        before ``on_job``: the webhook may come as soon as the provider has the job)."""
        if op_id is None:
            yield
            return
        self.arrivals.expect(op_id)
        try:
            yield
        finally:
            self.arrivals.forget(op_id)

    def follow(self, job: dict, deadline: Deadline, model: str, task: Task | None = None,
               webhook: str | None = None) -> dict:
        """Poll ``job`` until it ends; past ``deadline``, cancel it and fail (504).
        With a ``webhook``, polls are the fallback (up to PROVIDER_WEBHOOK_POLL_INTERVAL
        apart) and the webhook's arrival polls at once."""
        interval, seen = setting(self.config, "PROVIDER_POLL_INTERVAL"), None
        longest = setting(self.config, "PROVIDER_WEBHOOK_POLL_INTERVAL" if webhook
                          else "PROVIDER_POLL_MAX_INTERVAL")
        op_id = operation_of(task) if webhook else None
        while not job["done"]:
            if deadline.remaining() <= 0:
                self.give_up(job, f"{self.label} did not finish {model} within "
                                  f"{deadline.seconds:g} s", 504)
            woken = self.arrivals.wait(op_id, max(0, min(interval, deadline.remaining())))
            interval = min(interval * 1.5, longest)
            job = self._step(job, deadline, model)
            state = self.state(job)
            if task and (state != seen or woken):  # woken: a cancel is noticed at once
                self._tell(task.on_progress, state, job)
            seen = state
        return job

    def _step(self, job, deadline, model) -> dict:
        try:
            return self.refresh(job, deadline)
        except ProviderError as e:
            late = deadline.remaining() <= 0
            reason = "until the deadline passed" if late else "with an answer it cannot use"
            self.give_up(job, f"{self.label} could not follow {model} {reason} ({e.message})",
                         504 if late else e.status)
        except MALFORMED as e:
            self.give_up(job, malformed(self.label, e).message, 502)

    def give_up(self, job: dict, message: str, status: int):
        """Cancel ``job`` (it may still run, and be billed) and fail saying so."""
        canceled, why = self._cancel(job)
        raise ProviderError(f"{message}; {why}", status=status,
                            details={**self.describe(job), "canceled": canceled})

    def _cancel(self, job: dict) -> tuple[bool, str]:
        """Cancel ``job``: whether it was, and what happened, in words."""
        try:
            if self.cancel(job, Deadline(setting(self.config, "PROVIDER_CANCEL_TIMEOUT"))):
                return True, "the job was canceled"
            return False, "the job had already ended"
        except ProviderError as e:
            return False, (f"canceling it failed too ({e.message}); the provider's own "
                           "deadline stops it")

    def _tell(self, callback, payload: dict, job: dict) -> None:
        """Tell ``callback``. If it raises (the operation was canceled, say), the job
        is canceled at the provider and the exception goes on, with the job's details."""
        if callback is None:
            return
        try:
            callback(payload)
        except Exception as e:  # noqa: BLE001 -- whatever it is, the job is canceled, and it goes on
            canceled, _ = self._cancel(job)
            annotate(e, {**self.describe(job), "canceled": canceled})
            raise

    def deadline(self, task: Task, at: str | None = None) -> Deadline:
        """The job's deadline: ``at`` (an ISO time kept by ``on_job``), or the setting's."""
        name = "PROVIDER_VIDEO_DEADLINE" if makes_video(task.operation) else \
            "PROVIDER_IMAGE_DEADLINE"
        deadline = Deadline(setting(self.config, name))
        if at:
            left = (datetime.fromisoformat(at) - datetime.now(timezone.utc)).total_seconds()
            deadline.end = time.monotonic() + left
        return deadline

    def _place(self, value):
        """Large inline images uploaded first (``PROVIDER_INLINE_INPUT_BYTES``)."""
        if isinstance(value, list):
            return [self._place(item) for item in value]
        if isinstance(value, str) and value.startswith("data:"):
            data = data_bytes(value)
            if len(data) > setting(self.config, "PROVIDER_INLINE_INPUT_BYTES"):
                return self.upload(data)
        return value

    def require_token(self):
        if not self.token:
            raise ProviderError(f"{self.label} needs an API token: set {self.token_setting} in "
                                ".env (see .env.example)")

    def redact(self, text: str) -> str:
        return self.api.redact(text)


def operation_of(task: Task | None) -> str | None:
    """The id of the operation ``task`` runs for, when a queue's worker runs it."""
    return task.operation_id if task is not None else None


def _iso(deadline: Deadline) -> str:
    at = datetime.now(timezone.utc) + timedelta(seconds=deadline.remaining())
    return at.isoformat(timespec="seconds")


def _format_warning(task: Task, model: str, files: list, sent: str | None) -> list[str]:
    """A warning when an image came back in another format than the one asked for."""
    wanted = sent or task.params.get("outputFormat")
    if not files or not wanted or makes_video(task.operation):
        return []
    got = media.sniff(media.head(files[0]))[0]
    wanted = FORMAT_NAMES.get(wanted, wanted)
    if got == wanted:
        return []
    return [f"outputFormat: {model} answered {got.upper()}, not {wanted.upper()}"]
