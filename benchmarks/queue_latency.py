"""What going through the job queue costs, and what two workers get through.

1. Latency: a small local image edit (a 256x256 PNG, sepia) through the real
   route — its record written ``queued`` with its input, put on the SqliteHuey
   queue, claimed by a worker thread, run, its outcome written, the waiting
   request woken — against the same request recorded alike but run in the
   request thread (the studio's fallback when it has no queue: what the queue
   itself adds is the difference), the same request with nothing recorded
   (``RECORDING_ENABLED`` off) and the same work called directly (the provider
   on the same task), alternating in one run. Prints median and p95 of each
   and of the differences.
2. Throughput: N asynchronous text-to-image operations submitted at once,
   run by 1 then by 2 worker threads; operations per second.

    .venv/bin/python benchmarks/queue_latency.py [--requests 200] [--jobs 60] [--dir PATH]
"""

import argparse
import io
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation_studio import create_app  # noqa: E402
from generation_studio.providers import Task  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def small_png() -> bytes:
    image = Image.linear_gradient("L").resize((256, 256)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def latency(root: Path, count: int):
    app = create_app({"STORAGE_DIR": str(root / "latency"), "HISTORY_CHECK_WAITS": True,
                      "LOG_LEVEL": "WARNING"})
    client = app.test_client()
    inline = create_app({"STORAGE_DIR": str(root / "inline"), "HISTORY_CHECK_WAITS": True,
                         "LOG_LEVEL": "WARNING", "RECORDING_ENABLED": False}).test_client()
    unqueued = create_app({"STORAGE_DIR": str(root / "unqueued"), "HISTORY_CHECK_WAITS": True,
                           "LOG_LEVEL": "ERROR"})
    unqueued.extensions["jobs"].enqueue = _no_queue  # the fallback: run in the request
    logging.getLogger("generation_studio.jobs.service").setLevel(logging.ERROR)  # its notice
    unqueued = unqueued.test_client()
    provider = app.extensions["generation_provider"]
    picture = small_png()
    task = Task("image_edit_single", "sepia", {"outputFormat": "jpg"},
                [Image.open(io.BytesIO(picture)).convert("RGB")], [picture])
    queued, unrecorded, direct, recorded = [], [], [], []
    for n in range(count + 10):
        took = []
        for target in (client, inline, unqueued):
            start = time.perf_counter()
            answer = target.post("/api/edit/image", data={
                "prompt": "sepia", "image": (io.BytesIO(picture), "p.png")},
                content_type="multipart/form-data")
            took.append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200, answer.get_json()
        start = time.perf_counter()
        provider.run(task)
        took.append((time.perf_counter() - start) * 1000)
        if n >= 10:  # the first ones warm caches and start the workers
            queued.append(took[0])
            unrecorded.append(took[1])
            recorded.append(took[2])
            direct.append(took[3])
    app.extensions["jobs"].stop_workers()
    return queued, unrecorded, direct, recorded


def _no_queue(op_id):
    raise OSError("no queue in this baseline")


def throughput(root: Path, jobs: int, threads: int) -> float:
    app = create_app({"STORAGE_DIR": str(root / f"throughput{threads}"), "LOG_LEVEL": "WARNING",
                      "HISTORY_CHECK_WAITS": True, "QUEUE_IN_PROCESS": False})
    client = app.test_client()
    ids = [client.post("/api/generate/text-to-image", headers={"Prefer": "respond-async"},
                       json={"prompt": f"a lighthouse {n}", "seed": n}).get_json()["operationId"]
           for n in range(jobs)]
    history = app.extensions["history"]
    start = time.perf_counter()
    app.extensions["jobs"].start_workers(threads)
    for op_id in ids:
        while history.get(op_id)["status"] not in ("succeeded", "failed"):
            time.sleep(0.005)
    took = time.perf_counter() - start
    app.extensions["jobs"].stop_workers()
    return jobs / took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--dir", help="where to store (default: a temp folder)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="queue-bench-", dir=args.dir))
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, storage {root}")
    queued, unrecorded, direct, recorded = latency(root, args.requests)
    print(f"\nsmall image edit, {args.requests} requests each way        median ms    p95 ms")
    for label, values in (
            ("through the queue (route, sync, recorded)", queued),
            ("recorded alike, run in the request (no queue)", recorded),
            ("the same request run in it, nothing recorded", unrecorded),
            ("the same work called directly (provider)", direct),
            ("added by the queue (vs recorded, no queue)", [q - r for q, r in
                                                           zip(queued, recorded)]),
            ("added by queue + record vs the request alone", [q - u for q, u in
                                                             zip(queued, unrecorded)]),
            ("added by queue + record + HTTP vs the work", [q - d for q, d in
                                                           zip(queued, direct)])):
        print(f"{label:50}{statistics.median(values):10.2f}{percentile(values, 95):10.2f}")
    print(f"ratio of medians, queued / unrecorded request: "
          f"{statistics.median(queued) / statistics.median(unrecorded):.2f}; "
          f"queued / recorded without queue: "
          f"{statistics.median(queued) / statistics.median(recorded):.2f}")
    one = throughput(root, args.jobs, 1)
    two = throughput(root, args.jobs, 2)
    print(f"\nthroughput, {args.jobs} text-to-image jobs (1024x1024): 1 worker {one:.1f} ops/s, "
          f"2 workers {two:.1f} ops/s ({two / one:.2f}x)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the benchmark process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
