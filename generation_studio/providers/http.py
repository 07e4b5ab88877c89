"""One provider API over HTTP, under the rules the hosted providers share.

- A request that may create something (a job, an upload) is sent once; only
  a 429 is retried (``Retry-After``, a bounded number of times, then 503).
- A request that reads or cancels (``deadline=`` given) is retried on
  outages — 5xx, 429, timeouts, connection errors — with capped exponential
  backoff and jitter until that deadline, however long the outage lasts.
- Errors (problem details: ``title``, ``detail``, ``status``; fal's
  ``detail`` list of ``{loc, msg}``) become clear messages: 401/403 bad token,
  402 billing, 404 unknown model → 502; 400/422 invalid input → 400.
- The token goes only to the API's own origin and never into a message.
- An answer that is not a JSON object, or lacks a key the caller reads
  (``Answer``), is a 502 quoting the provider's words, cut short.
"""

import json
import math
import random
import time
from urllib.parse import urlsplit

import requests

from .errors import ProviderError, cut, setting

THROTTLE_ATTEMPTS = 4
RETRYABLE = frozenset({429, 500, 502, 503, 504})


class Deadline:
    """A point in time, ``seconds`` from now."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


class ApiClient:
    def __init__(self, label: str, base: str, auth: str, token: str | None, token_setting: str,
                 config, fields: dict | None = None):
        self.label, self.base, self.auth, self.token = label, base.rstrip("/"), auth, token
        self.token_setting, self.config = token_setting, config
        self.fields = fields or {}  # a model input's name -> the studio's field
        self.session = requests.Session()  # the API's; downloads use their own

    def call(self, method: str, url: str, *, deadline: Deadline | None = None,
             retry_on=RETRYABLE, accept=(), timeout=None, **kwargs) -> dict:
        """One API request; its JSON object. See the module for the retries.
        Error statuses in ``accept`` answer their body instead of raising."""
        if urlsplit(url)[:2] != urlsplit(self.base)[:2]:
            raise ProviderError(f"{self.label} pointed at {url.split('?')[0]}, outside its API "
                                "origin; the request was not sent")
        headers = {"Authorization": self.auth, **kwargs.pop("headers", {})}
        attempt = throttled = 0
        while True:
            attempt += 1
            limit = timeout or setting(self.config, "PROVIDER_HTTP_TIMEOUT")
            if deadline is not None:  # never past the deadline, but always a moment
                limit = max(min(limit, 1.0), min(limit, deadline.remaining()))
            try:
                response = self.session.request(method, url, headers=headers, timeout=limit,
                                                **kwargs)
            except requests.RequestException as e:
                problem = f"could not be reached ({type(e).__name__})"
                if self._wait(deadline, attempt, None):
                    continue
                raise ProviderError(f"{self.label} {problem}", status=504 if deadline else 502) \
                    from None
            status = response.status_code
            if status == 429 and deadline is None:
                throttled += 1
                wait = retry_after(response)
                if throttled < THROTTLE_ATTEMPTS:
                    time.sleep(min(wait, setting(self.config, "PROVIDER_MAX_RETRY_WAIT")))
                    continue
                raise ProviderError(f"{self.label} is rate-limiting this account (429) after "
                                    f"{throttled} tries; try again in {math.ceil(wait)} s",
                                    status=503, headers={"Retry-After": str(math.ceil(wait))})
            if status in retry_on and deadline is not None:
                wait = min(retry_after(response), setting(self.config, "PROVIDER_MAX_RETRY_WAIT")) \
                    if status == 429 else None
                if self._wait(deadline, attempt, wait):
                    continue
            if status >= 400 and status not in accept:
                raise self.error_for(response)
            return self._json(response)

    def _wait(self, deadline, attempt, wait) -> bool:
        """Sleep before the next try if ``deadline`` leaves time; else False."""
        if deadline is None:
            return False
        if wait is None:
            base = setting(self.config, "PROVIDER_RETRY_BACKOFF")
            cap = setting(self.config, "PROVIDER_RETRY_MAX_BACKOFF")
            wait = min(cap, base * 2 ** min(attempt - 1, 30)) * random.uniform(0.5, 1.0)
        if deadline.remaining() <= 0:
            return False
        time.sleep(max(0.0, min(wait, deadline.remaining())))
        return True

    def _json(self, response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            words = self.redact(cut(response.text.strip(), 200)) or "an empty body"
            raise ProviderError(f"{self.label} answered {response.status_code} with something "
                                f"that is not a JSON object: {words}")
        return answer(body, self.label, self.redact)

    def error_for(self, response) -> ProviderError:
        status = response.status_code
        detail, field = problem_detail(response)
        what = {
            401: (f"rejected the API token (401 Unauthorized): check {self.token_setting}", 502),
            403: (f"refused access (403 Forbidden): check {self.token_setting}", 502),
            402: ("needs billing set up or credit on the account (402 Payment Required)", 502),
            404: ("does not know this model or resource (404 Not Found)", 502),
            422: ("refused the input (422 Unprocessable Entity)", 400),
            400: ("refused the request (400 Bad Request)", 400),
        }.get(status, (f"answered {status}", 502))
        message = f"{self.label} {what[0]}" + (f": {self.redact(detail)}" if detail else "")
        field = self.fields.get(field, field) if what[1] == 400 else None
        return ProviderError(message, status=what[1], field=field)

    def redact(self, text: str) -> str:
        return text.replace(self.token, "[redacted]") if self.token and text else text


class Answer(dict):
    """A provider's JSON object: reading a key it lacks is the provider's
    malformed answer (``ProviderError``, 502), not the studio's KeyError."""

    label = "The provider"
    redact = staticmethod(str)

    def __missing__(self, key):
        words = self.redact(cut(json.dumps(self, default=str), 200))
        raise ProviderError(f"{self.label} answered without {key!r}, which it should give: "
                            f"{words}")


def answer(value, label: str, redact=str):
    """``value`` with every JSON object in it an ``Answer``."""
    if isinstance(value, dict):
        wrapped = Answer({k: answer(v, label, redact) for k, v in value.items()})
        wrapped.label, wrapped.redact = label, redact
        return wrapped
    if isinstance(value, list):
        return [answer(v, label, redact) for v in value]
    return value


def retry_after(response) -> float:
    """Seconds to wait from ``Retry-After`` (or ``retry_after`` in the body); 1 if absent."""
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


def problem_detail(response) -> tuple[str, str | None]:
    """The text of an error body (problem details, or fal's validation list),
    and the input field at fault when it names one."""
    try:
        body = response.json()
    except ValueError:
        return cut(response.text.strip(), 200), None
    if not isinstance(body, dict):
        return cut(str(body), 200), None
    detail = body.get("detail") or body.get("error") or body.get("title") or ""
    fields = [f.get("field", "").removeprefix("input.") for f in body.get("invalid_fields") or []
              if isinstance(f, dict)]
    if isinstance(detail, list):  # validation errors: [{"loc": ["body", "x"], "msg": "..."}]
        items = [d for d in detail if isinstance(d, dict)]
        fields += [".".join(str(p) for p in d.get("loc", [])[1:]) for d in items]
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:]) or 'input'}: {d.get('msg', d)}"
            if isinstance(d, dict) else str(d) for d in detail)
    fields = [f for f in fields if f]
    return cut(str(detail)), (fields[0] if len(fields) == 1 else None)
