"""What the backup costs and how fast it goes, in one run, against a local
S3 endpoint (moto's server, in its own process, on 127.0.0.1).

1. Throughput: N operations made with backup off (text-to-image 1:1 JPEG,
   and every tenth a text-to-video), then ``flask backup run`` sends them:
   operations/s and MB/s; then a second run (incremental: nothing to send).
2. Automatic: N generations with backup on; the time until the last record
   is in the bucket.
3. Latency: text-to-image with backup on against backup off, alternating
   request by request (the order flipped every pair) while the backup
   thread uploads: median, p95, ratio on/off.
4. Memory: one 256 MB file sent as a multipart upload: MB/s and the
   process's peak RSS before and after (flat memory: it should not grow by
   the file's size).

    .venv/bin/python benchmarks/backup_bench.py [--n 50] [--requests 100] [--big-mb 256]
"""

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
import requests  # noqa: E402

from generation_studio import create_app  # noqa: E402

BUCKET, PREFIX = "bench-backup", "studio"
PAYLOAD = {"prompt": "a lighthouse on a cliff by the sea at sunset", "aspectRatio": "1:1",
           "outputFormat": "jpg"}


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_store(work: Path):
    port = 20000 + os.getpid() % 20000
    log = open(work / "moto.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(url, timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=BUCKET)
    return process, url


def studio(work: Path, name: str, endpoint: str | None, **extra):
    config = {"TESTING": True, "STORAGE_DIR": str(work / name), "HISTORY_CHECK_WAITS": True,
              "MAX_VIDEO_FRAMES": 24, "LOCAL_VIDEO_SIZE": 256, "LOG_LEVEL": "WARNING", **extra}
    if endpoint:
        config.update(BACKUP_URL=f"s3://{BUCKET}/{PREFIX}/{name}", BACKUP_ENDPOINT_URL=endpoint,
                      BACKUP_POLL_SECONDS=0.2)
    return create_app(config)


def generate(client, n: int):
    if n % 10 == 9:
        return client.post("/api/video/text-to-video", json={"prompt": "waves on the sea",
                                                             "duration": 2, "fps": 8, "seed": n})
    return client.post("/api/generate/text-to-image", json={**PAYLOAD, "seed": n})


def throughput(work: Path, endpoint: str, n: int) -> None:
    off = studio(work, "throughput", None)
    for i in range(n):
        assert generate(off.test_client(), i).status_code == 200
    off.extensions["jobs"].stop_workers()
    app = studio(work, "throughput", endpoint, BACKUP_AUTO=False)
    size = sum(p.stat().st_size for p in (work / "throughput").iterdir() if p.is_file())
    ops = len(app.extensions["history"].locations())
    runner = app.test_cli_runner()
    started = time.perf_counter()
    result = runner.invoke(args=["backup", "run"])
    took = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    started = time.perf_counter()
    again = runner.invoke(args=["backup", "run"])
    second = time.perf_counter() - started
    print(f"flask backup run: {ops} operations, {size / 1e6:.1f} MB in {took:.2f} s: "
          f"{ops / took:.1f} operations/s, {size / 1e6 / took:.1f} MB/s")
    print(f"  second run (incremental): {second:.2f} s — {again.stdout.strip()}")
    app.extensions["jobs"].stop_workers()


def automatic(work: Path, endpoint: str, n: int) -> None:
    app = studio(work, "automatic", endpoint)
    client, backup = app.test_client(), app.extensions["backup"]
    started = time.perf_counter()
    for i in range(n):
        assert generate(client, i).status_code == 200
    answered = time.perf_counter() - started
    while backup.status()["pending"] or backup.status()["backedUp"] < n:
        time.sleep(0.02)
    done = time.perf_counter() - started
    print(f"automatic: {n} generations answered in {answered:.2f} s; all {n} in the bucket "
          f"{done:.2f} s after the first request ({done - answered:.2f} s after the last answer)")
    backup.uploader.stop()
    app.extensions["jobs"].stop_workers()


def latency(work: Path, endpoint: str, requests_count: int) -> None:
    apps = {"off": studio(work, "latency-off", None), "on": studio(work, "latency-on", endpoint)}
    clients = {k: a.test_client() for k, a in apps.items()}
    times = {"off": [], "on": []}
    for k in clients:  # warm-up
        generate(clients[k], 0)
    for i in range(requests_count):
        for k in (("on", "off") if i % 2 else ("off", "on")):
            started = time.perf_counter()
            assert clients[k].post("/api/generate/text-to-image",
                                   json={**PAYLOAD, "seed": i}).status_code == 200
            times[k].append((time.perf_counter() - started) * 1000)
    backup = apps["on"].extensions["backup"]
    while backup.status()["pending"]:
        time.sleep(0.02)
    print(f"latency of text-to-image, {requests_count} requests each, alternating:")
    for k in ("off", "on"):
        print(f"  backup {k:3}: median {statistics.median(times[k]):6.1f} ms, "
              f"p95 {percentile(times[k], 95):6.1f} ms")
    print(f"  ratio on/off: median {statistics.median(times['on']) / statistics.median(times['off']):.3f}, "
          f"p95 {percentile(times['on'], 95) / percentile(times['off'], 95):.3f}; "
          f"backed up meanwhile: {backup.status()['backedUp']}")
    backup.uploader.stop()
    for app in apps.values():
        app.extensions["jobs"].stop_workers()


def memory(work: Path, endpoint: str, big_mb: int) -> None:
    app = studio(work, "memory", endpoint, BACKUP_AUTO=False)
    target = app.extensions["backup"].target
    path = work / "big.bin"
    with open(path, "wb") as f:
        for _ in range(big_mb):
            f.write(os.urandom(1024 * 1024))
    before = peak_rss_mb()
    started = time.perf_counter()
    target.upload(path, "big.bin", "0" * 64, "application/octet-stream", path.stat().st_size)
    took = time.perf_counter() - started
    print(f"multipart upload of {big_mb} MB: {big_mb / took:.1f} MB/s; peak RSS "
          f"{before:.0f} MB before, {peak_rss_mb():.0f} MB after")
    app.extensions["jobs"].stop_workers()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=256)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"Python {platform.python_version()}, {platform.platform()}")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        store, endpoint = start_store(work)
        try:
            throughput(work, endpoint, args.n)
            automatic(work, endpoint, args.n)
            latency(work, endpoint, args.requests)
            memory(work, endpoint, args.big_mb)
        finally:
            store.terminate()
            store.wait(10)


if __name__ == "__main__":
    main()
