"""Fuzzing: schemathesis against a live server, from its own OpenAPI document.

Every route is sent generated requests, valid and invalid (a fixed seed, a
bounded number per route: ``FUZZ_EXAMPLES``, 6 here, thousands of requests
with ``make fuzz``). Each answer must be no 5xx, a documented status with
the documented content type and shape, and strict JSON (no ``NaN``); an
``operationId`` it names must be a record the history has.

The same module is the run's hooks (``SCHEMATHESIS_HOOKS=tests.test_fuzz``):
the ``strict_json`` check below is loaded by ``st`` in its own process.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import schemathesis

from .servers import flask_run

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
PHASES = os.environ.get("FUZZ_PHASES", "examples,fuzzing")
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


@schemathesis.check
def strict_json(ctx, response, case):
    """A JSON answer parses as strict JSON, and the operation it names exists."""
    if "json" not in response.headers.get("Content-Type", [""])[0]:
        return None
    body = json.loads(response.content, parse_constant=_reject_constant)
    op_id = body.get("operationId") if isinstance(body, dict) else None
    if op_id:
        base = case.operation.base_url or ""
        found = requests.get(f"{base}/api/history/{op_id}", timeout=10)
        assert found.status_code == 200, f"the answer names {op_id}, which has no record"
    return None


def fuzz_app():
    """The app the server runs (``flask --app "tests.test_fuzz:fuzz_app()"``),
    with the API description's blueprint registered if the app does not yet."""
    from generation_studio import create_app
    from generation_studio.routes import docs
    app = create_app()
    if "docs" not in app.blueprints:
        app.register_blueprint(docs.bp)
    return app


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    settings = {"FLASK_STORAGE_DIR": str(work / "operations"), "FLASK_ADMIN_TOKEN": None,
                "FLASK_SECRET_KEY": "fuzz-tests", "FLASK_LOCAL_VIDEO_SIZE": "64",
                "FLASK_MAX_VIDEO_FRAMES": "8", "FLASK_QUEUE_THREADS": "2"}
    with open(work / "server.log", "w") as log:
        process, base = flask_run(settings, log, app="tests.test_fuzz:fuzz_app()")
        try:
            yield base, work
        finally:
            process.terminate()
            process.wait(10)


def pinned_ids(base: str, work: Path) -> Path:
    """A schemathesis config whose ``op_id`` and ``name`` are a real operation
    and its output (DELETE gets one of its own), so that the routes of one
    operation are fuzzed past their 404."""
    made = [requests.post(f"{base}/api/generate/text-to-image", json={"prompt": name},
                          timeout=60).json()["operationId"] for name in ("kept", "deleted")]
    path = work / "schemathesis.toml"
    path.write_text(f'''[parameters]
"path.op_id" = "{made[0]}"
"path.name" = "{made[0]}_out.jpg"

[[operations]]
include-method = "DELETE"
parameters = {{ "path.op_id" = "{made[1]}" }}
''')
    return path


def run_schemathesis(base: str, work: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``st run`` against ``base``; its output and how long it took."""
    command = [str(Path(sys.executable).with_name("st")), "--config-file",
               str(pinned_ids(base, work)), "run", f"{base}/api/openapi.json",
               "--checks", f"{CHECKS},strict_json", "--phases", PHASES,
               "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1",
               "--request-timeout", "60", "--no-color"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.test_fuzz", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=3600)
    (work / "schemathesis.log").write_text(result.stdout + result.stderr)
    return result, time.monotonic() - started


ANSI = re.compile(r"\x1b\[[0-9;]*m")
ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/1\.[01]"\S* (\d{3})')


def answers(server_log: Path, paths) -> dict[str, list[int]]:
    """The statuses the server answered to each documented operation
    ("POST /api/edit/pose"), read from its access log."""
    templates = [(re.compile("^" + re.sub(r"\{(\w+)\}", lambda m: ".+" if m[1] == "name"
                                          else "[^/]+", path) + "$"), path) for path in paths]
    found = {}
    text = ANSI.sub("", server_log.read_text(errors="replace"))  # werkzeug colours 4xx, 5xx
    for method, target, status in ACCESS_LINE.findall(text):
        path = target.split("?")[0]
        for pattern, template in templates:
            if pattern.match(path):
                found.setdefault(f"{method} {template}", []).append(int(status))
                break
    return found


def test_fuzzing_finds_no_server_error_and_no_answer_outside_the_document(server):
    base, work = server
    result, seconds = run_schemathesis(base, work)
    documented = requests.get(f"{base}/api/openapi.json", timeout=10).json()["paths"]
    found = answers(work / "server.log", documented)
    statuses = [s for answered in found.values() for s in answered]
    server_errors = [s for s in statuses if s >= 500]
    print(f"schemathesis: {len(statuses)} requests, {len(server_errors)} 5xx, {seconds:.0f} s")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert server_errors == []
    routes = {f"{method.upper()} {path}" for path, item in documented.items()
              for method in item if method != "parameters"}
    assert routes <= set(found)  # every route was reached (and other methods tried on them)
