"""Real processes: gunicorn servers, ``flask worker`` processes and a real
``redis-server``, started and stopped here; servers killed with SIGKILL."""

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .servers import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def environment(storage: Path, **settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.update({"FLASK_STORAGE_DIR": str(storage), "FLASK_LOG_LEVEL": "WARNING",
                "FLASK_MAX_VIDEO_FRAMES": "24", "FLASK_LOCAL_VIDEO_SIZE": "96"})
    env.update({f"FLASK_{k}": v if isinstance(v, str) else json.dumps(v)
                for k, v in settings.items()})
    return env


class Processes:
    """Starts processes in their own process groups; kills them all at the end."""

    def __init__(self, logs: Path):
        self.logs, self.started = logs, []

    def start(self, args, env, name):
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.started.append(proc)
        return proc

    def server(self, storage, name="web", workers=2, **settings):
        port = free_port()
        proc = self.start([str(BIN / "gunicorn"), "--workers", str(workers), "--worker-class",
                           "gthread", "--threads", "64", "--bind", f"127.0.0.1:{port}",
                           "--no-control-socket", "generation_studio:create_app()"],
                          environment(storage, **settings),
                          name)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if requests.get(f"{base}/api/health", timeout=10).status_code == 200:
                    return proc, base
            except requests.RequestException:  # not listening yet, or busy starting
                time.sleep(0.1)
        raise AssertionError(f"{name} did not start: {(self.logs / f'{name}.log').read_text()}")

    def worker(self, storage, name="worker", **settings):
        return self.start([str(BIN / "flask"), "--app", "generation_studio", "worker",
                           "--threads", "2"], environment(storage, **settings), name)

    @staticmethod
    def kill(proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def stop_all(self):
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill(proc)


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def redis_url(tmp_path, processes):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    port = free_port()
    processes.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(tmp_path)], dict(os.environ), "redis")
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


def records_in(storage: Path) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in storage.glob("*.json")}


def wait_until_all_final(storage: Path, seconds=60) -> dict:
    deadline = time.time() + seconds
    while True:
        found = records_in(storage)
        if all(r["status"] in ("succeeded", "failed", "canceled") for r in found.values()):
            return found
        if time.time() > deadline:
            left = {k: r["status"] for k, r in found.items()
                    if r["status"] not in ("succeeded", "failed", "canceled")}
            raise AssertionError(f"still unfinished: {left}")
        time.sleep(0.2)


def test_two_servers_and_two_workers_share_one_redis_queue(tmp_path, processes, redis_url):
    storage = tmp_path / "ops"
    servers = [processes.server(storage, f"web{n}", QUEUE_URL=redis_url, QUEUE_IN_PROCESS=False)
               for n in range(2)]
    for n in range(2):
        processes.worker(storage, f"worker{n}", QUEUE_URL=redis_url)

    def generate(n):
        base = servers[n % 2][1]
        return requests.post(f"{base}/api/generate/text-to-image", timeout=120,
                             json={"prompt": f"a lighthouse {n}", "seed": n, "aspectRatio": "1:1"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(generate, range(200)))
    assert [a.status_code for a in answers] == [200] * 200
    found = records_in(storage)
    assert set(found) == {a.json()["operationId"] for a in answers}
    assert {r["status"] for r in found.values()} == {"succeeded"}
    assert [r["attempts"] for r in found.values()] == [1] * 200
    workers = {r["provider"].get("seed") for r in found.values()}
    assert workers == set(range(200))


def test_a_web_server_killed_under_load_loses_no_accepted_operation(tmp_path, processes):
    storage = tmp_path / "ops"
    answered = []
    for round_ in range(4):
        proc, base = processes.server(storage, f"web{round_}", LEASE_SECONDS=3)

        def generate(n, base=base, round_=round_):
            prefer = {"Prefer": "respond-async"} if n % 2 else {}
            kind = n % 3
            try:
                if kind == 0:
                    return requests.post(f"{base}/api/video/text-to-video", headers=prefer,
                                         json={"prompt": f"waves {round_} {n}", "duration": 2,
                                               "fps": 12}, timeout=30)
                return requests.post(f"{base}/api/generate/text-to-image", headers=prefer,
                                     json={"prompt": f"a cat {round_} {n}"}, timeout=30)
            except requests.RequestException:
                return None  # in flight when the server died

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(generate, n) for n in range(60)]
            time.sleep(1.5)
            processes.kill(proc)
            answered += [f.result() for f in futures]
    got = [a for a in answered if a is not None]
    assert [a.status_code for a in got if a.status_code >= 500] == []
    proc, base = processes.server(storage, "web-final", LEASE_SECONDS=3)
    requests.get(f"{base}/api/health", timeout=30)  # its first request starts its workers
    found = wait_until_all_final(storage)
    accepted = {a.json()["operationId"] for a in got if a.status_code in (200, 202)}
    assert accepted and accepted <= set(found)
    assert {r["status"] for r in found.values()} <= {"succeeded"}
    # The restarted server's recovery (in the background, at start) removes what the dead left.
    deadline = time.time() + 15
    while [p for p in storage.iterdir() if p.name.endswith(".tmp")] and time.time() < deadline:
        time.sleep(0.1)
    left = [p.name for p in storage.iterdir() if p.name.endswith(".tmp")]
    assert left == [], [(n, _process(n)) for n in left]


def _process(temp_name: str) -> str:
    """What the process named in a temp file is now (for a failure's message)."""
    pid = temp_name.split(".pid")[1].split("-")[0]
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"


def test_every_process_killed_then_restarted_finishes_twenty_queued_operations(
        tmp_path, processes):
    storage = tmp_path / "ops"
    proc, base = processes.server(storage, "web", QUEUE_IN_PROCESS=False)
    ids = [requests.post(f"{base}/api/video/text-to-video", headers={"Prefer": "respond-async"},
                         json={"prompt": f"rain {n}", "duration": 2, "fps": 12},
                         timeout=10).json()["operationId"] for n in range(20)]
    worker = processes.worker(storage, "worker", LEASE_SECONDS=3)
    time.sleep(0.5)
    processes.kill(worker)
    processes.kill(proc)
    processes.worker(storage, "worker-again", LEASE_SECONDS=3)
    found = wait_until_all_final(storage)
    assert sorted(found) == sorted(ids)
    assert {r["status"] for r in found.values()} == {"succeeded"}


def test_fifty_open_event_streams_leave_the_server_answering(tmp_path, processes):
    storage = tmp_path / "ops"
    proc, base = processes.server(storage, "web", QUEUE_IN_PROCESS=False)
    op_id = requests.post(f"{base}/api/generate/text-to-image",
                          headers={"Prefer": "respond-async"},
                          json={"prompt": "a queued cat"}, timeout=10).json()["operationId"]
    streams = [requests.get(f"{base}/api/history/{op_id}/events", stream=True, timeout=10)
               for _ in range(50)]
    try:
        assert {s.status_code for s in streams} == {200}
        started = time.monotonic()
        assert requests.get(f"{base}/api/history", timeout=5).status_code == 200
        assert time.monotonic() - started < 2
    finally:
        for s in streams:
            s.close()


def test_a_worker_killed_during_a_hosted_job_resumes_the_same_job(tmp_path, processes):
    from .fakes import FakeReplicate
    fake = FakeReplicate("r8_TEST_resume_T0KEN")
    try:
        fake.never_finish = True
        storage = tmp_path / "ops"
        settings = {"GENERATION_PROVIDER": "replicate", "REPLICATE_API_BASE": f"{fake.origin}/v1",
                    "REPLICATE_API_TOKEN": "r8_TEST_resume_T0KEN", "REPLICATE_WAIT_SECONDS": 1,
                    "ALLOWED_RESULT_ORIGINS": [fake.cdn.origin], "PROVIDER_POLL_INTERVAL": 0.05,
                    "PROVIDER_POLL_MAX_INTERVAL": 0.1, "PROVIDER_IMAGE_DEADLINE": 60,
                    "PROVIDER_SCHEMA_DIR": str(tmp_path / "schemas"), "LEASE_SECONDS": 3}
        proc, base = processes.server(storage, "web", QUEUE_IN_PROCESS=False, **settings)
        op_id = requests.post(f"{base}/api/generate/text-to-image",
                              headers={"Prefer": "respond-async"}, timeout=10,
                              json={"prompt": "a fox", "seed": 3}).json()["operationId"]
        worker = processes.worker(storage, "worker", **settings)
        deadline = time.time() + 30
        while not records_in(storage)[op_id].get("providerJob"):  # written before any poll
            assert time.time() < deadline
            time.sleep(0.05)
        processes.kill(worker)
        fake.never_finish = False
        processes.worker(storage, "worker-again", **settings)
        record = wait_until_all_final(storage)[op_id]
        assert record["status"] == "succeeded" and record["attempts"] == 2
        assert len(fake.made("POST", "/predictions")) == 1
        assert record["provider"]["predictionId"] == "job0"
        assert (storage / record["resultFile"]).read_bytes() == fake.files["out.png"][0]
    finally:
        fake.close()
