"""Loopback fakes of Replicate's and fal.ai's HTTP APIs, on real ports.

Each follows its provider's documented protocol closely enough for our client
to be tested against it, keeps every request it received (method, path,
headers, body) and is steered by plain attributes a test sets.
"""

import itertools
import threading

from flask import Flask, jsonify, redirect, request
from werkzeug.serving import make_server

from .conftest import png_bytes

MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 64
HTML = b"<!DOCTYPE html><html><body>Access denied</body></html>"


class LoopbackServer:
    """A Flask app served on 127.0.0.1 on a free port, in a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.thread.join()


class FakeBase:
    token_header = ""

    def __init__(self, token: str):
        self.token = token
        self.requests = []
        self.ids = (f"job{n}" for n in itertools.count())
        self.files = {"out.png": (png_bytes((64, 64), (10, 120, 200), pattern=True), "image/png"),
                      "out2.png": (png_bytes((32, 32), (200, 120, 10), pattern=True), "image/png"),
                      "clip.mp4": (MP4, "video/mp4"), "page.html": (HTML, "text/html")}
        self.redirects = {}  # delivery name -> Location
        self.outputs = ["out.png"]  # what a finished job outputs (delivery names)
        self.outputs_by_model = {}
        self.create_answers = []  # (status, body, headers) answered before creating a job
        self.poll_answers = []  # (status, body) answered to polls before the real state
        self.polls_before_done = 0
        self.never_finish = False
        self.app = Flask(type(self).__name__)
        self.app.before_request(self._keep)
        self.app.add_url_rule("/delivery/<name>", view_func=self._delivery)
        self.routes()
        self.server = LoopbackServer(self.app)
        self.origin = self.server.origin

    def routes(self):
        raise NotImplementedError

    def _keep(self):
        body = request.get_data(cache=True)
        self.requests.append({
            "method": request.method, "path": request.path, "headers": dict(request.headers),
            "json": request.get_json(silent=True), "body": body,
            "files": {k: f.read() for k, f in request.files.items()}})

    def _delivery(self, name):
        if name in self.redirects:
            return redirect(self.redirects[name], 302)
        data, mime = self.files[name]
        return data, 200, {"Content-Type": mime}

    def authorized(self) -> bool:
        return request.headers.get("Authorization") == f"{self.token_header} {self.token}"

    def made(self, method=None, path_part=""):
        return [r for r in self.requests
                if (method is None or r["method"] == method) and path_part in r["path"]]

    def output_urls(self, model):
        names = self.outputs_by_model.get(model, self.outputs)
        return [f"{self.origin}/delivery/{n}" if not n.startswith("http") else n for n in names]


class FakeReplicate(FakeBase):
    token_header = "Bearer"

    def __init__(self, token):
        self.predictions = {}
        self.final_status = "succeeded"
        self.error = None
        self.output_as_list = False
        self.planner = "openai/gpt-4o-mini"
        self.llm_answer = "Sorry, I cannot plan that."  # the planner's text, streamed in tokens
        super().__init__(token)

    def routes(self):
        self.app.add_url_rule("/v1/models/<owner>/<name>/predictions", methods=["POST"],
                              view_func=self._create_official)
        self.app.add_url_rule("/v1/predictions", methods=["POST"], view_func=self._create_version)
        self.app.add_url_rule("/v1/predictions/<pid>", view_func=self._get)
        self.app.add_url_rule("/v1/predictions/<pid>/cancel", methods=["POST"],
                              view_func=self._cancel)
        self.app.add_url_rule("/v1/files", methods=["POST"], view_func=self._upload)
        self.app.add_url_rule("/v1/files/<fid>", view_func=lambda fid: ("", 200))

    def _problem(self, status, title, detail):
        return jsonify(title=title, detail=detail, status=status), status, \
            {"Content-Type": "application/problem+json"}

    def _create_official(self, owner, name):
        return self._create(f"{owner}/{name}", None)

    def _create_version(self):
        return self._create("community/model", request.json.get("version"))

    def _create(self, model, version):
        if not self.authorized():
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        if self.create_answers:
            status, body, headers = self.create_answers.pop(0)
            return jsonify(body), status, headers
        pid = next(self.ids)
        self.predictions[pid] = {
            "id": pid, "model": model, "version": version or "v-" + model.replace("/", "-"),
            "input": request.json["input"], "status": "starting", "output": None,
            "error": None, "metrics": {}, "polls": 0,
            "urls": {"get": f"{self.origin}/v1/predictions/{pid}",
                     "cancel": f"{self.origin}/v1/predictions/{pid}/cancel"}}
        self._advance(pid)
        return jsonify(self._public(pid)), 201

    def _advance(self, pid):
        p = self.predictions[pid]
        if p["status"] in ("succeeded", "failed", "canceled", "aborted") or self.never_finish:
            return
        if p["polls"] < self.polls_before_done:
            p["status"] = "processing"
            return
        p["status"] = self.final_status
        p["metrics"] = {"predict_time": 1.25}
        if self.final_status == "succeeded":
            if p["model"] == self.planner:
                p["output"] = [self.llm_answer[i:i + 7] for i in range(0, len(self.llm_answer), 7)]
            else:
                urls = self.output_urls(p["model"])
                p["output"] = urls if self.output_as_list or len(urls) > 1 else urls[0]
        else:
            p["error"] = self.error

    def _public(self, pid):
        return {k: v for k, v in self.predictions[pid].items() if k != "polls"}

    def _get(self, pid):
        if not self.authorized():
            return self._problem(401, "Unauthenticated", "Invalid token")
        if self.poll_answers:
            status, body = self.poll_answers.pop(0)
            return jsonify(body), status
        self.predictions[pid]["polls"] += 1
        self._advance(pid)
        return jsonify(self._public(pid))

    def _cancel(self, pid):
        self.predictions[pid]["status"] = "canceled"
        return jsonify(self._public(pid))

    def _upload(self):
        content = request.files["content"]
        fid = next(self.ids)
        return jsonify(id=fid, name=content.filename, size=len(content.read()),
                       urls={"get": f"{self.origin}/v1/files/{fid}"}), 201


class FakeFal(FakeBase):
    token_header = "Key"

    def __init__(self, token):
        self.jobs = {}
        self.result_error = None  # (status, body) answered by response_url
        super().__init__(token)

    def routes(self):
        self.app.add_url_rule("/<owner>/<app>/requests/<rid>/status", view_func=self._status)
        self.app.add_url_rule("/<owner>/<app>/requests/<rid>/cancel", methods=["PUT"],
                              view_func=self._cancel)
        self.app.add_url_rule("/<owner>/<app>/requests/<rid>", view_func=self._response)
        self.app.add_url_rule("/<path:model>", methods=["POST"], view_func=self._submit)

    def _submit(self, model):
        if not self.authorized():
            return jsonify(detail="Invalid Key"), 401
        if self.create_answers:
            status, body, headers = self.create_answers.pop(0)
            return jsonify(body), status, headers
        rid = next(self.ids)
        owner, app = model.split("/")[:2]
        base = f"{self.origin}/{owner}/{app}/requests/{rid}"
        self.jobs[rid] = {"model": model, "input": request.json, "polls": 0, "canceled": False}
        return jsonify(request_id=rid, status="IN_QUEUE", queue_position=0,
                       status_url=f"{base}/status", response_url=base,
                       cancel_url=f"{base}/cancel")

    def _status(self, owner, app, rid):
        if self.poll_answers:
            status, body = self.poll_answers.pop(0)
            return jsonify(body), status
        job = self.jobs[rid]
        job["polls"] += 1
        if self.never_finish or job["polls"] <= self.polls_before_done:
            return jsonify(status="IN_PROGRESS" if job["polls"] > 1 else "IN_QUEUE",
                           queue_position=0), 202
        return jsonify(status="COMPLETED", metrics={"inference_time": 0.8}), 200

    def _cancel(self, owner, app, rid):
        self.jobs[rid]["canceled"] = True
        return jsonify(status="CANCELLATION_REQUESTED"), 202

    def _response(self, owner, app, rid):
        if self.result_error:
            status, body = self.result_error
            return jsonify(body), status
        urls = self.output_urls(self.jobs[rid]["model"])
        if any(u.endswith(".mp4") for u in urls):
            return jsonify(video={"url": urls[0], "content_type": "video/mp4"})
        return jsonify(images=[{"url": u, "width": 64, "height": 64} for u in urls], seed=1)

