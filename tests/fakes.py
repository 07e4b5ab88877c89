"""Loopback fakes of Replicate's and fal.ai's HTTP APIs, as strict as the real ones.

Each serves its provider's documented protocol on a real port, keeps every
request it received (method, path, headers, body) and is steered by plain
attributes a test sets. They refuse what the providers refuse: a missing or
wrong key on every call (create, status, result, cancel, uploads, schemas);
unknown input fields and values outside the models' published input schemas
(``generation_studio/providers/contracts/*.json``: the same published schemas
the studio checks against, read here by an independent checker); a
``Cancel-After`` under 5 s or a ``Prefer: wait`` outside 1-60; a large inline
data URI instead of an upload; unknown jobs. Result files are served by a
separate CDN server (another origin), outputs come in every documented shape
(``output_shape``), and ``outage`` makes the status endpoints fail (503, 502,
429 with ``Retry-After``, dropped connections, answers slower than the
client's timeout) for a number of seconds.

A job created with a webhook (Replicate's ``webhook``, fal's ``fal_webhook``)
ends on its own ``webhook_delay`` seconds after its creation, whatever the
polls, and the fake then calls the webhook back (again, up to
``webhook_attempts`` times, while not answered 2xx), signed as the provider
signs (Standard Webhooks with the secret of ``GET /v1/webhooks/default/secret``;
ED25519 under the key of ``/.well-known/jwks.json``); each call is kept in
``webhooks``. ``send_webhooks = False``: no call back, and the job ends by
polls as any other.
"""

import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import requests
from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

from .conftest import png_bytes

CONTRACTS = Path(__file__).resolve().parent.parent / "generation_studio" / "providers" / "contracts"
MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 64
HTML = b"<!DOCTYPE html><html><body>Access denied</body></html>"
INLINE_LIMIT = 256 * 1024


def published(provider: str) -> dict:
    """The published input schemas of ``provider``'s models, by model id."""
    return json.loads((CONTRACTS / f"{provider}.json").read_text())["models"]


class LoopbackServer:
    """A Flask app served on 127.0.0.1 on a free port, in a thread."""

    def __init__(self, app, port=0):
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.thread.join()


class Outage:
    """Status requests fail for ``seconds`` from the first one, cycling through ``kinds``."""

    def __init__(self, seconds: float, kinds=("503", "drop", "429", "502"), slow=0.5):
        self.seconds, self.kinds, self.started, self.failed = seconds, kinds, None, 0
        self.slow = slow  # how long a "slow" answer takes

    def answer(self):
        """A failure to answer with, or None once the outage is over."""
        self.started = self.started or time.monotonic()
        if time.monotonic() - self.started >= self.seconds:
            return None
        kind = self.kinds[self.failed % len(self.kinds)]
        self.failed += 1
        if kind == "drop":
            request.environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            return "", 500
        if kind == "429":
            return jsonify(detail="Request was throttled"), 429, {"Retry-After": "0.05"}
        if kind == "slow":  # an answer after the client's timeout
            time.sleep(self.slow)
            return jsonify(detail="Gateway timeout"), 504
        return jsonify(detail="Service unavailable"), int(kind)


def refusal(spec: dict, value) -> str | None:
    """Why ``value`` breaks the published ``spec``, or None (independent of the studio's check)."""
    if "anyOf" in spec:
        return None if any(refusal(s, value) is None for s in spec["anyOf"]) else \
            "does not match any of the allowed forms"
    if "enum" in spec:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = any(value == e and (type(value) is type(e) or (number and type(e) in (int, float)))
                 for e in spec["enum"])
        return None if ok else f"must be one of: {', '.join(map(str, spec['enum']))}"
    kind = spec.get("type")
    checks = {"integer": lambda v: type(v) is int, "number": lambda v: type(v) in (int, float),
              "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict)}
    if kind in checks and not checks[kind](value):
        return f"must be of type {kind}"
    if type(value) in (int, float):
        if "minimum" in spec and value < spec["minimum"]:
            return f"must be greater than or equal to {spec['minimum']}"
        if "maximum" in spec and value > spec["maximum"]:
            return f"must be less than or equal to {spec['maximum']}"
    if isinstance(value, str):
        if len(value) < spec.get("minLength", 0):
            return f"must have at least {spec['minLength']} characters"
        if "maxLength" in spec and len(value) > spec["maxLength"]:
            return f"must have at most {spec['maxLength']} characters"
        if spec.get("format") == "uri" and not re.match(r"(https?://|data:)", value):
            return "must be a URI"
    if isinstance(value, list):
        for item in value:
            if refusal(spec.get("items") or {}, item):
                return f"item {item!r:.40}: {refusal(spec.get('items') or {}, item)}"
    if isinstance(value, dict) and "properties" in spec:
        for key, item in value.items():
            if key not in spec["properties"]:
                return f"has no field {key}"
            if refusal(spec["properties"][key], item):
                return f"{key} {refusal(spec['properties'][key], item)}"
    return None


def input_problems(contract: dict, data) -> list[tuple[str, str]]:
    """(field, problem) for each way ``data`` breaks ``contract``."""
    if not isinstance(data, dict):
        return [("input", "must be an object")]
    props = contract["properties"]
    found = [(k, "is not an input of this model") for k in data if k not in props]
    found += [(k, "is required") for k in contract.get("required", []) if k not in data]
    found += [(k, refusal(props[k], v)) for k, v in data.items() if k in props and refusal(props[k], v)]
    for key, value in data.items():  # files: large ones must be uploaded, not inlined
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item.startswith("data:") and \
                    len(item.partition(",")[2]) * 3 // 4 > INLINE_LIMIT:
                found.append((key, "inline data URI over 256 kB: upload the file first"))
    return found


class FakeCdn:
    """The file host, on its own origin: results, redirects, signed uploads."""

    def __init__(self):
        self.requests = []
        self.files = {"out.png": (png_bytes((64, 64), (10, 120, 200), pattern=True), "image/png"),
                      "out2.png": (png_bytes((32, 32), (200, 120, 10), pattern=True), "image/png"),
                      "clip.mp4": (MP4, "video/mp4"), "page.html": (HTML, "text/html")}
        self.redirects = {}  # name -> Location
        self.failures = {}  # name -> statuses answered first (a CDN outage)
        self.uploads = {}  # upload id -> file name
        self.app = Flask("FakeCdn")
        self.app.before_request(lambda: _keep(self.requests))
        self.app.add_url_rule("/delivery/<name>", view_func=self._delivery)
        self.app.add_url_rule("/upload/<uid>", methods=["PUT"], view_func=self._upload)
        self.server = LoopbackServer(self.app)
        self.origin = self.server.origin

    def _delivery(self, name):
        if self.failures.get(name):
            return "busy", self.failures[name].pop(0)
        if name in self.redirects:
            return redirect(self.redirects[name], 302)
        if name not in self.files:
            return "Not found", 404
        data, mime = self.files[name]
        return data, 200, {"Content-Type": mime}

    def _upload(self, uid):
        if uid not in self.uploads or request.args.get("signature") != "ok":
            return "bad signature", 403
        if "Authorization" in request.headers:
            return "signed uploads take no credentials", 400
        self.files[self.uploads[uid]] = (request.get_data(), request.content_type)
        return "", 200


def _keep(log):
    body = request.get_data(cache=True)
    log.append({"method": request.method, "path": request.path, "headers": dict(request.headers),
                "args": dict(request.args), "json": request.get_json(silent=True), "body": body,
                "files": {k: f.read() for k, f in request.files.items()}, "at": time.monotonic()})


class FakeBase:
    token_header = ""
    provider = ""

    def __init__(self, token: str):
        self.token = token
        self.requests = []
        self.ids = (f"job{n}" for n in itertools.count())
        self.cdn = FakeCdn()
        self.files, self.redirects = self.cdn.files, self.cdn.redirects
        self.schemas = dict(published(self.provider))  # model id -> its published input schema
        self.outputs = ["out.png"]  # what a finished job outputs (CDN names, or full URLs)
        self.outputs_by_model = {}
        self.output_shape = "auto"
        self.create_answers = []  # (status, body, headers) answered before creating a job
        self.poll_answers = []  # (status, body) answered to status requests first
        self.outage = None  # an Outage of the status endpoint
        self.polls_before_done = 0
        self.never_finish = False
        self.send_webhooks = True
        self.webhook_delay = 0.2  # seconds from a job's creation to its end and its webhook
        self.webhooks = []  # the calls back made: url, headers, body, answer status
        self.webhook_attempts, self.webhook_retry_delay = 3, 0.5
        self.app = Flask(type(self).__name__)
        self.app.before_request(lambda: _keep(self.requests))
        self.routes()
        self.server = LoopbackServer(self.app)
        self.origin = self.server.origin

    def close(self):
        self.server.close()
        self.cdn.server.close()

    def routes(self):
        raise NotImplementedError

    def authorized(self) -> bool:
        return request.headers.get("Authorization") == f"{self.token_header} {self.token}"

    def made(self, method=None, path_part=""):
        every = sorted(self.requests + self.cdn.requests, key=lambda r: r["at"])
        return [r for r in every
                if (method is None or r["method"] == method) and path_part in r["path"]]

    def output_urls(self, model):
        names = self.outputs_by_model.get(model, self.outputs)
        return [n if n.startswith(("http", "data:")) else f"{self.cdn.origin}/delivery/{n}"
                for n in names]

    def data_uri(self, url):
        data, mime = self.files[url.rsplit("/", 1)[-1]]
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"

    def call_back_later(self, url: str, job_id: str) -> None:
        """End the job ``webhook_delay`` seconds from now and call its webhook."""
        if not self.send_webhooks:
            return
        timer = threading.Timer(self.webhook_delay, self._call_back, (url, job_id))
        timer.daemon = True
        timer.start()

    def _call_back(self, url, job_id):
        """Call, and as the providers do, call again a while later if not answered 2xx."""
        body = json.dumps(self.end_for_webhook(job_id)).encode()
        for _ in range(self.webhook_attempts):
            headers = {"Content-Type": "application/json", **self.signed(job_id, body)}
            try:
                status = requests.post(url, data=body, headers=headers, timeout=10).status_code
            except requests.RequestException as e:
                status = type(e).__name__
            self.webhooks.append({"url": url, "headers": headers, "body": body, "status": status})
            if status in (200, 201, 202, 204):
                return
            time.sleep(self.webhook_retry_delay)

    def end_for_webhook(self, job_id: str) -> dict:
        """End the job if it runs still; the webhook's body."""
        raise NotImplementedError

    def signed(self, job_id: str, body: bytes, timestamp: int | None = None) -> dict:
        """The signature headers of a webhook about ``job_id``."""
        raise NotImplementedError

    def status_failure(self):
        if self.outage:
            failure = self.outage.answer()
            if failure is not None:
                return failure
        if self.poll_answers:
            status, body = self.poll_answers.pop(0)
            return jsonify(body), status
        return None



def cog_openapi(contract: dict) -> dict:
    """A model version's ``openapi_schema`` as Cog publishes it: enums as components."""
    components, props = {}, {}
    for order, (name, spec) in enumerate(contract["properties"].items()):
        if "enum" in spec:
            components[name] = {"title": name, "description": "An enumeration.",
                                "type": spec["type"], "enum": spec["enum"]}
            spec = {"allOf": [{"$ref": f"#/components/schemas/{name}"}],
                    **({"default": spec["default"]} if "default" in spec else {})}
        props[name] = {**spec, "x-order": order}
    components["Input"] = {"type": "object", "title": "Input", "properties": props,
                           "required": contract.get("required", [])}
    return {"openapi": "3.0.2", "info": {"title": "Cog"}, "components": {"schemas": components}}


def go_seconds(text: str) -> float | None:
    """Seconds in a duration like ``5s``, ``1m30s``, ``2h``; None if malformed."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", text or "")
    if not text or not match:
        return None
    hours, minutes, seconds = (float(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class FakeReplicate(FakeBase):
    token_header = "Bearer"
    provider = "replicate"
    TERMINAL = ("succeeded", "failed", "canceled", "aborted")

    def __init__(self, token):
        self.predictions = {}
        self.versions = {}  # version id -> model, for owner/name:version models
        self.uploads = {}
        self.final_status = "succeeded"
        self.error = None
        self.output_as_list = False
        self.planner = "openai/gpt-4o-mini"
        self.llm_answer = "Sorry, I cannot plan that."  # the planner's text, streamed in tokens
        self.signing_secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        self.messages = (f"msg_{n}" for n in itertools.count())
        super().__init__(token)

    def routes(self):
        rule = self.app.add_url_rule
        rule("/v1/models/<owner>/<name>/predictions", methods=["POST"], view_func=self._create_official)
        rule("/v1/predictions", methods=["POST"], view_func=self._create_version)
        rule("/v1/predictions/<pid>", view_func=self._get)
        rule("/v1/predictions/<pid>/cancel", methods=["POST"], view_func=self._cancel)
        rule("/v1/files", methods=["POST"], view_func=self._upload)
        rule("/v1/files/<fid>", view_func=self._file)
        rule("/v1/models/<owner>/<name>", view_func=self._model)
        rule("/v1/models/<owner>/<name>/versions/<vid>", view_func=self._version)
        rule("/v1/webhooks/default/secret", view_func=self._secret)

    def _problem(self, status, title, detail, **more):
        return jsonify(title=title, detail=detail, status=status, **more), status, \
            {"Content-Type": "application/problem+json"}

    def _unauthenticated(self):
        return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")

    def _create_official(self, owner, name):
        if f"{owner}/{name}" not in self.schemas and self.authorized():
            return self._problem(404, "Not found", "The requested resource could not be found")
        return self._create(f"{owner}/{name}", None)

    def _create_version(self):
        version = (request.get_json(silent=True) or {}).get("version")
        if version not in self.versions and self.authorized():
            return self._problem(422, "Invalid version", "The specified version does not exist")
        return self._create(self.versions.get(version), version)

    def _create(self, model, version):
        if not self.authorized():
            return self._unauthenticated()
        if self.create_answers:
            status, body, headers = self.create_answers.pop(0)
            return jsonify(body), status, headers
        prefer = request.headers.get("Prefer")
        wait = re.fullmatch(r"wait(?:=(\d+))?", prefer or "wait")
        if not wait or not 1 <= int(wait.group(1) or 60) <= 60:
            return self._problem(400, "Invalid Prefer header", "Prefer must be wait or wait=n, 1 to 60")
        cancel_after = request.headers.get("Cancel-After")
        seconds = go_seconds(cancel_after) if cancel_after is not None else None
        if cancel_after is not None and (seconds is None or seconds < 5):
            return self._problem(400, "Invalid Cancel-After header",
                                 "Cancel-After must be a duration of at least 5s")
        body = request.get_json(silent=True) or {}
        webhook, events = body.get("webhook"), body.get("webhook_events_filter")
        if webhook is not None and not re.match(r"https?://", str(webhook)):
            return self._problem(422, "Invalid webhook", "webhook must be an HTTP(S) URL")
        if events is not None and (not isinstance(events, list) or not set(events) <= {
                "start", "output", "logs", "completed"}):
            return self._problem(422, "Invalid webhook_events_filter",
                                 "webhook_events_filter takes start, output, logs, completed")
        problems = input_problems(self.schemas[model], body.get("input"))
        problems += [(k, "is not an uploaded file") for k, v in (body.get("input") or {}).items()
                     for u in (v if isinstance(v, list) else [v]) if isinstance(u, str)
                     and u.startswith(f"{self.origin}/v1/files/")
                     and u.rsplit("/", 1)[-1] not in self.uploads]
        if problems:
            return self._problem(422, "Input validation failed", "".join(
                f"- input.{k}: {p}\n" for k, p in problems), invalid_fields=[
                {"type": "invalid", "field": f"input.{k}", "description": p} for k, p in problems])
        pid = next(self.ids)
        self.predictions[pid] = {
            "id": pid, "model": model, "version": version or "v-" + model.replace("/", "-"),
            "input": body["input"], "status": "starting", "output": None, "logs": "",
            "error": None, "metrics": {}, "polls": 0, "cancel_after": seconds,
            "created": time.monotonic(), "urls": {
                "get": f"{self.origin}/v1/predictions/{pid}",
                "cancel": f"{self.origin}/v1/predictions/{pid}/cancel",
                "web": f"https://replicate.com/p/{pid}"}}
        if webhook:
            self.predictions[pid] |= {"webhook": webhook,
                                      "webhook_events_filter": events or ["start", "output",
                                                                          "logs", "completed"]}
            if "completed" in self.predictions[pid]["webhook_events_filter"]:
                self.call_back_later(webhook, pid)
        self._advance(pid)
        return jsonify(self._public(pid)), 201

    def _advance(self, pid):
        p = self.predictions[pid]
        if p["status"] in self.TERMINAL:
            return
        if p["cancel_after"] and time.monotonic() - p["created"] > p["cancel_after"]:
            p["status"] = "canceled" if p["status"] == "processing" else "aborted"
            return
        if self.never_finish or p["polls"] < self.polls_before_done:
            p["status"] = "processing" if p["polls"] else "starting"
            return
        self._finish(p)

    def _finish(self, p):
        p["status"] = self.final_status
        p["metrics"] = {"predict_time": 1.25}
        if self.final_status != "succeeded":
            p["error"] = self.error
        elif p["model"] == self.planner:
            p["output"] = [self.llm_answer[i:i + 7] for i in range(0, len(self.llm_answer), 7)]
        else:
            p["output"] = self._shaped(self.output_urls(p["model"]))

    def _shaped(self, urls):
        shape = self.output_shape
        if shape == "auto":
            shape = "list" if self.output_as_list or len(urls) > 1 else "string"
        return {"string": lambda: urls[0], "list": lambda: urls,
                "object": lambda: {"image": urls[0], **{f"image_{n}": u for n, u in enumerate(urls[1:], 1)}},
                "objects": lambda: [{"image": u} for u in urls],
                "data": lambda: [self.data_uri(u) for u in urls] if len(urls) > 1 else self.data_uri(urls[0]),
                }[shape]()

    def end_for_webhook(self, job_id):
        if self.predictions[job_id]["status"] not in self.TERMINAL:
            self._finish(self.predictions[job_id])
        return self._public(job_id)

    def signed(self, job_id, body, timestamp=None):
        msg_id, timestamp = next(self.messages), int(time.time() if timestamp is None else timestamp)
        key = base64.b64decode(self.signing_secret.removeprefix("whsec_"))
        digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": "v1," + base64.b64encode(digest).decode()}

    def _secret(self):
        if not self.authorized():
            return self._unauthenticated()
        return jsonify(key=self.signing_secret)

    def _public(self, pid):
        hidden = ("polls", "cancel_after", "created", "model")
        return {k: v for k, v in self.predictions[pid].items() if k not in hidden}

    def _get(self, pid):
        failure = self.status_failure()
        if failure is not None:
            return failure
        if not self.authorized():
            return self._unauthenticated()
        if pid not in self.predictions:
            return self._problem(404, "Not found", "The requested resource could not be found")
        self.predictions[pid]["polls"] += 1
        self._advance(pid)
        return jsonify(self._public(pid))

    def _cancel(self, pid):
        if not self.authorized():
            return self._unauthenticated()
        if pid not in self.predictions:
            return self._problem(404, "Not found", "The requested resource could not be found")
        if self.predictions[pid]["status"] not in self.TERMINAL:
            self.predictions[pid]["status"] = "canceled"
        return jsonify(self._public(pid))

    def _upload(self):
        if not self.authorized():
            return self._unauthenticated()
        if "content" not in request.files:
            return self._problem(400, "Bad request", "content is required")
        content = request.files["content"]
        fid = next(self.ids)
        self.uploads[fid] = content.read()
        return jsonify(id=fid, name=content.filename, content_type=content.mimetype,
                       size=len(self.uploads[fid]), urls={"get": f"{self.origin}/v1/files/{fid}"}), 201

    def _file(self, fid):
        if not self.authorized():
            return self._unauthenticated()
        return (jsonify(id=fid), 200) if fid in self.uploads else ("", 404)

    def _model(self, owner, name):
        if not self.authorized():
            return self._unauthenticated()
        model = f"{owner}/{name}"
        if model not in self.schemas:
            return self._problem(404, "Not found", "The requested resource could not be found")
        return jsonify(owner=owner, name=name, latest_version={
            "id": "v-" + model.replace("/", "-"), "openapi_schema": cog_openapi(self.schemas[model])})

    def _version(self, owner, name, vid):
        if not self.authorized():
            return self._unauthenticated()
        if self.versions.get(vid) != f"{owner}/{name}":
            return self._problem(404, "Not found", "The requested resource could not be found")
        return jsonify(id=vid, openapi_schema=cog_openapi(self.schemas[f"{owner}/{name}"]))


def fal_openapi(model: str, contract: dict) -> dict:
    """An endpoint's queue OpenAPI document as fal publishes it."""
    owner, app = model.split("/")[:2]
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Input"}}}}
    return {"openapi": "3.0.4", "info": {"title": model}, "paths": {
        f"/{owner}/{app}/requests/{{request_id}}/status": {"get": {}},
        f"/{model}": {"post": {"requestBody": body}}},
        "components": {"schemas": {"Input": {"type": "object", **contract}}}}


class FakeFal(FakeBase):
    token_header = "Key"
    provider = "fal"

    def __init__(self, token):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        self.jobs = {}
        self.result_error = None  # (status, body) answered by response_url
        self.signing_key = Ed25519PrivateKey.generate()
        super().__init__(token)

    def routes(self):
        rule = self.app.add_url_rule
        rule("/storage/upload/initiate", methods=["POST"], view_func=self._initiate)
        rule("/.well-known/jwks.json", view_func=self._jwks)
        rule("/api/openapi/queue/openapi.json", view_func=self._openapi)
        rule("/<owner>/<app>/requests/<rid>/status", view_func=self._status)
        rule("/<owner>/<app>/requests/<rid>/cancel", methods=["PUT"], view_func=self._cancel)
        rule("/<owner>/<app>/requests/<rid>", view_func=self._response)
        rule("/<path:model>", methods=["POST"], view_func=self._submit)
        rule("/<path:other>", methods=["GET", "PUT"], endpoint="unknown",
             view_func=lambda other: (jsonify(detail="Not found"), 404))

    def _unauthorized(self):
        return jsonify(detail="Invalid Key"), 401

    def _submit(self, model):
        if not self.authorized():
            return self._unauthorized()
        if self.create_answers:
            status, body, headers = self.create_answers.pop(0)
            return jsonify(body), status, headers
        if model not in self.schemas:
            return jsonify(detail=f"Application '{model}' not found"), 404
        timeout = request.headers.get("X-Fal-Request-Timeout")
        if timeout is not None and not re.fullmatch(r"\d+(\.\d+)?", timeout):
            return jsonify(detail="X-Fal-Request-Timeout must be a number of seconds"), 400
        data = request.get_json(silent=True)
        problems = input_problems(self.schemas[model], data)
        if problems:
            return jsonify(detail=[{"loc": ["body", k], "msg": p, "type": "value_error"}
                                   for k, p in problems]), 422
        rid = next(self.ids)
        owner, app = model.split("/")[:2]
        base = f"{self.origin}/{owner}/{app}/requests/{rid}"
        self.jobs[rid] = {"model": model, "app": f"{owner}/{app}", "input": data, "polls": 0,
                          "canceled": False, "done": False}
        if request.args.get("fal_webhook"):
            self.jobs[rid]["webhook"] = request.args["fal_webhook"]
            self.call_back_later(request.args["fal_webhook"], rid)
        return jsonify(request_id=rid, status="IN_QUEUE", queue_position=self.polls_before_done,
                       status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel")

    def _job(self, owner, app, rid):
        """The job, or the error to answer (a key is needed, and the right app)."""
        if not self.authorized():
            return None, self._unauthorized()
        job = self.jobs.get(rid)
        if job is None or job["app"] != f"{owner}/{app}":
            return None, (jsonify(detail="Request not found"), 404)
        return job, None

    def _status(self, owner, app, rid):
        failure = self.status_failure()
        if failure is not None:
            return failure
        job, error = self._job(owner, app, rid)
        if error:
            return error
        job["polls"] += 1
        if not job["done"] and (self.never_finish or job["polls"] <= self.polls_before_done):
            left = max(0, self.polls_before_done - job["polls"])
            if job["polls"] == 1 or left:
                return jsonify(status="IN_QUEUE", queue_position=left), 202
            return jsonify(status="IN_PROGRESS", logs=[]), 202
        job["done"] = True
        return jsonify(status="COMPLETED", logs=[], metrics={"inference_time": 0.8}), 200

    def _cancel(self, owner, app, rid):
        job, error = self._job(owner, app, rid)
        if error:
            return error
        if job["done"]:
            return jsonify(status="ALREADY_COMPLETED"), 400
        job["canceled"] = job["done"] = True
        return jsonify(status="CANCELLATION_REQUESTED"), 202

    def _response(self, owner, app, rid):
        job, error = self._job(owner, app, rid)
        if error:
            return error
        if not job["done"]:
            return jsonify(detail="Request is still in progress"), 400
        if job["canceled"]:
            return jsonify(detail="Request was cancelled"), 400
        if self.result_error:
            status, body = self.result_error
            return jsonify(body), status
        return jsonify(self._output(job))

    def _output(self, job):
        urls = self.output_urls(job["model"])
        if self.output_shape == "data":
            urls = [self.data_uri(u) for u in urls]
        files = [{"url": u, "content_type": "image/png", "file_name": "out.png"} for u in urls]
        if any(u.endswith(".mp4") for u in urls):
            return {"video": {"url": urls[0], "content_type": "video/mp4"}}
        if self.output_shape == "image":
            return {"image": files[0], "seed": 1}
        return {"images": [{**f, "width": 64, "height": 64} for f in files], "seed": 1}

    def end_for_webhook(self, job_id):
        job = self.jobs[job_id]
        job["done"] = True
        ok = not job["canceled"]
        return {"request_id": job_id, "gateway_request_id": job_id,
                "status": "OK" if ok else "ERROR", "error": None if ok else "Request was cancelled",
                "payload": self._output(job) if ok else None}

    def signed(self, job_id, body, timestamp=None):
        timestamp = str(int(time.time() if timestamp is None else timestamp))
        message = "\n".join([job_id, "fake-user", timestamp, hashlib.sha256(body).hexdigest()])
        return {"X-Fal-Webhook-Request-Id": job_id, "X-Fal-Webhook-User-Id": "fake-user",
                "X-Fal-Webhook-Timestamp": timestamp,
                "X-Fal-Webhook-Signature": self.signing_key.sign(message.encode()).hex()}

    def _jwks(self):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return jsonify(keys=[{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "fake-key"}])

    def _initiate(self):
        if not self.authorized():
            return self._unauthorized()
        body = request.get_json(silent=True) or {}
        if request.args.get("storage_type") != "fal-cdn-v3" or not body.get("content_type") \
                or not body.get("file_name"):
            return jsonify(detail="content_type and file_name are required"), 422
        uid = next(self.ids)
        name = f"upload-{uid}-{body['file_name']}"
        self.cdn.uploads[uid] = name
        return jsonify(upload_url=f"{self.cdn.origin}/upload/{uid}?signature=ok",
                       file_url=f"{self.cdn.origin}/delivery/{name}")

    def _openapi(self):
        model = request.args.get("endpoint_id", "")
        if model not in self.schemas:
            return jsonify(detail="Endpoint not found"), 404
        return jsonify(fal_openapi(model, self.schemas[model]))
