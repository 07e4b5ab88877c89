"""What the tests that start real server processes share: a free port on
loopback, waiting for a condition, and ``flask run`` started and awaited."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, seconds=15.0, every=0.05):
    """``check()``'s first true value within ``seconds``; AssertionError after."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true after {seconds} s: {check}")


def flask_run(settings: dict, log, app: str = "generation_studio", port: int | None = None,
              seconds: float = 30):
    """``flask run`` of ``app`` with ``settings`` (FLASK_* variables; None removes
    one from the environment) on loopback, its output in the open file ``log``;
    ``(process, base URL)`` once it answers."""
    port = port or free_port()
    env = {k: v for k, v in {**os.environ, **settings}.items() if v is not None}
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", app, "run", "--host", "127.0.0.1",
         "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def answers():
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped (exit {process.returncode}); see {log.name}")
        try:
            return requests.get(f"{base}/api/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False
    try:
        wait_for(answers, seconds)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, base
