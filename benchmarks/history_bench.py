"""The history at scale: pages, search, stats, export, reindex and clean-up.

Fills a fresh store with N synthetic but realistic operations (default
100,000: all types, spread over 90 days, a tenth failed, workflows with
steps, small real PNG files), then measures in one run, through the real
app (Flask's test client) and commands:

- first page, filtered page, prompt search, deep pagination (offset and cursor),
  stats: median and 95th percentile over repeated requests;
- the same first page by a plain scan of the JSON files (the baseline);
- full CSV export and reindex: the real ``flask history`` commands, each in
  its own process (time, and that process's peak memory);
- the recovery turn one server process runs every few minutes (the sweep,
  then the index checked against the records), against listing the folder
  once (its floor);
- a 30-day clean-up (last, since it deletes two thirds of the history).

    .venv/bin/python benchmarks/history_bench.py [--operations 100000] [--repeat 30]
"""

import argparse
import io
import json
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from generation_studio import create_app  # noqa: E402
from generation_studio.history.filters import Filters  # noqa: E402
from generation_studio.catalog import OPERATIONS  # noqa: E402
from generation_studio.media import describe  # noqa: E402
from generation_studio.storage.layout import new_id  # noqa: E402

# Prompt words with a Zipf-like spread, as real prompts have: a few common
# words ("portrait", "light"), a long tail of rare ones.
SUBJECTS = ("cat fox robot castle garden river dragon portrait lighthouse city forest ocean "
            "mountain desert harbor village temple bridge train ship owl wolf horse tiger whale "
            "astronaut knight witch samurai dancer violinist chef gardener pilot diver monk "
            "child grandmother twins crowd market library cathedral greenhouse observatory "
            "windmill canyon glacier volcano waterfall meadow swamp jungle reef island").split()
STYLES = ("watercolor oil painting photograph sketch charcoal pastel cinematic isometric "
          "pixel-art ukiyo-e art-nouveau baroque minimalist surreal noir vaporwave cyberpunk "
          "steampunk impressionist cubist low-poly claymation origami stained-glass").split()
MOODS = ("sunset dawn night fog rain snow storm golden-hour neon moonlight candlelight "
         "overcast spring autumn winter summer misty dusty stormy serene eerie joyful").split()
TYPES = list(OPERATIONS)


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)).save(buffer, "PNG")
    return buffer.getvalue()


def seed_store(root: Path, count: int, workers: int = 0):
    """Write ``count`` operations as the store lays them out (no fsync: setup
    only), in chunks of CHUNK written by a pool of processes."""
    root.mkdir(parents=True)
    chunks = [(str(root), n, min(CHUNK, count - start))
              for n, start in enumerate(range(0, count, CHUNK))]
    with multiprocessing.Pool(workers or os.cpu_count()) as pool:
        for _ in pool.imap_unordered(_seed_chunk, chunks):
            pass


CHUNK = 10_000


def _seed_chunk(job) -> None:
    root, number, count = job
    root, rng = Path(root), random.Random(f"7-{number}")
    files = [png(n) for n in range(16)]
    infos = [describe(f) for f in files]
    now = datetime.now(timezone.utc)
    made = 0
    while made < count:
        when = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
        op_type = rng.choice(TYPES)
        parent = None
        if rng.random() < 0.03 and made + 3 <= count:  # a workflow and its two steps
            parent = write(root, rng, when, "edit_then_video", None, files, infos)
            made += 1
            op_type = "image_edit_single"
        write(root, rng, when, op_type, parent, files, infos)
        made += 1
        if parent:
            write(root, rng, when, "image_to_video_single", parent, files, infos)
            made += 1


def put(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write(root, rng, when, op_type, parent, files, infos) -> str:
    op_id = new_id(when)
    failed = rng.random() < 0.1
    low, _, _ = OPERATIONS.get(op_type, (1, 1, "video"))
    entries = []
    for n in range(low):
        k = rng.randrange(16)
        name = f"{op_id}_in_{n}.png"
        put(root / name, files[k])
        entries.append(entry(name, infos[k], originalName=f"photo{n}.png"))
    outputs = []
    if not failed:
        k = rng.randrange(16)
        put(root / f"{op_id}_out.png", files[k])
        outputs.append(entry(f"{op_id}_out.png", infos[k]))
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    duration = round(rng.lognormvariate(6.5 if OPERATIONS.get(op_type, (0, 0, "video"))[2] ==
                                        "video" else 4.5, 0.6), 1)
    record = {
        "operationId": op_id, "operationType": op_type,
        "status": "failed" if failed else "succeeded", "createdAt": stamp,
        "completedAt": stamp, "durationMs": duration,
        "prompt": prompt(rng),
        "parameters": {"aspectRatio": "16:9", "seed": rng.randrange(2**32)},
        "resultUrl": None, "resultUrls": [], "workflowAnalysis": None,
        "error": "the engine ran out of paint" if failed else None,
        "errorType": "GenerationError" if failed else None,
        "provider": {"name": rng.choice(("local", "local", "replicate", "fal")), "model": "m"},
        "inputImages": entries, "outputs": outputs,
        "resultFile": outputs[0]["file"] if outputs else None, "schemaVersion": 1,
    }
    if parent:
        record["parentId"] = parent
    if rng.random() < 0.005:  # a few in the trash, a few starred, as a user leaves them
        record["trashedAt"] = stamp
    elif rng.random() < 0.01:
        record["starred"] = True
    put(root / f"{op_id}.json", json.dumps(record, indent=2).encode())
    return op_id


def prompt(rng) -> str:
    """A subject, a style and a mood or two, each word's weight 1/rank^0.8 (Zipf-like)."""
    def pick(words):
        return rng.choices(words, weights=[1 / r ** 0.8 for r in range(1, len(words) + 1)])[0]
    parts = [f"a {pick(SUBJECTS)}", f"in {pick(STYLES)} style", pick(MOODS)]
    if rng.random() < 0.5:
        parts.append(f"with a {pick(SUBJECTS)}")
    return ", ".join(parts)


def entry(name, info, **extra):
    return {"file": name, "contentType": info.content_type, "bytes": info.size,
            "sha256": info.sha256, "width": info.width, "height": info.height, **extra}


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def p95(samples):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def plain_scan_first_page(root: Path):
    """The baseline: read every record, sort newest first, keep 50."""
    records = [json.loads(p.read_bytes()) for p in root.glob("*.json")]
    records.sort(key=lambda r: (r["createdAt"], r["operationId"]), reverse=True)
    return records[:50]


def command(root: Path, *args) -> tuple[float, float]:
    """Run ``flask <args>`` on the store as a user would; (seconds, its peak memory in MB).

    The peak is the process's own VmHWM, read from /proc while it runs: it
    starts afresh at exec and only grows (a forked child's ru_maxrss would
    count the parent's memory from before the exec).
    """
    env = {**os.environ, "FLASK_STORAGE_DIR": str(root), "FLASK_LOG_LEVEL": "WARNING"}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "generation_studio", *args],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_kb = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
        except (FileNotFoundError, IndexError, ValueError):
            pass
        time.sleep(0.02)
    assert process.returncode == 0, f"flask {' '.join(args)} failed"
    return time.perf_counter() - start, peak_kb / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--dir", help="where to build the store (default: a temp folder here)")
    parser.add_argument("--store", help="a store folder to use: filled when it does not exist, "
                                        "kept afterwards (no clean-up unless --cleanup)")
    parser.add_argument("--cleanup", action="store_true", help="run the clean-up on --store too")
    parser.add_argument("--fill-only", action="store_true", help="fill --store and stop")
    args = parser.parse_args()

    parent = Path(args.dir or Path(__file__).resolve().parent / "out")
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=parent))
    root = Path(args.store) if args.store else work / "operations"
    try:
        if not root.exists():
            start = time.perf_counter()
            seed_store(root, args.operations)
            print(f"seeded {args.operations:,} operations in {time.perf_counter() - start:.1f} s "
                  f"({sum(1 for _ in os.scandir(root)):,} files)", flush=True)
        if args.fill_only:
            return
        shutil.rmtree(root / ".index", ignore_errors=True)  # the start-up builds it afresh
        startup_s, startup_mb = command(root, "history", "list", "--limit", "1")
        reindex_s, reindex_mb = command(root, "history", "reindex")
        app = create_app({"STORAGE_DIR": str(root), "LOG_LEVEL": "WARNING",
                          "HISTORY_CHECK_WAITS": True})
        client = app.test_client()
        store = app.extensions["history"]
        # A --store keeps its own count (fewer than seeded once the trash is emptied).
        operations = sum(1 for _ in store.index.ids())
        deep_id = store.page(Filters(), 1, operations // 10 * 9).operations[0]["operationId"]
        newest = datetime.fromisoformat(store.page(Filters(), 1).operations[0]["createdAt"][:10])
        month_ago, two_months_ago = (f"{newest - timedelta(days=d):%Y-%m-%d}" for d in (29, 59))
        requests = {
            "first page (50)": "/api/history",
            "gallery page (toplevel=1)": "/api/history?toplevel=1",
            "filtered page (type+status)": "/api/history?type=text_to_image&status=succeeded",
            "prompt search (q=dragon watercolor)": "/api/history?q=dragon+watercolor",
            "prompt search (q=cat, common)": "/api/history?q=cat",
            "prompt search + type filter": "/api/history?q=cat&type=text_to_image",
            "gallery search (q=cat, toplevel=1)": "/api/history?q=cat&toplevel=1",
            "search + status (q=cat&status=failed)": "/api/history?q=cat&status=failed",
            "gallery search + succeeded (dragon watercolor)":
                "/api/history?q=dragon+watercolor&toplevel=1&status=succeeded",
            "search + provider (q=cat&provider=replicate)":
                "/api/history?q=cat&provider=replicate",
            "search + last 30 days (q=cat&since=)": f"/api/history?q=cat&since={month_ago}",
            "search + a month (q=cat&since=&until=)":
                f"/api/history?q=cat&since={two_months_ago}&until={month_ago}",
            "search + since a time (q=cat&since=...T12:00)":
                f"/api/history?q=cat&since={two_months_ago}T12:00:00Z",
            "deep page (offset 90%)": f"/api/history?offset={operations // 10 * 9}",
            "deep page (cursor 90%)": f"/api/history?before={deep_id}",
            "stats (30 days)": "/api/history/stats",
        }
        rows = []
        for label, url in requests.items():
            answer = client.get(url)
            assert answer.status_code == 200
            if "total" in answer.get_json():
                label += f" [{answer.get_json()['total']:,} match]"
            rows.append((label, timed(lambda url=url: client.get(url), args.repeat)))
        baseline = timed(lambda: plain_scan_first_page(root),
                         1 if operations > 200_000 else max(3, args.repeat // 10))
        export_s, export_mb = command(root, "history", "export", "-o", str(work / "export.csv"))
        # The recovery turn every few minutes, against its floor: listing the folder once.
        recovery = timed(store.recover, 3)
        check = timed(store.check_index, 3)
        listing = timed(lambda: sum(1 for _ in os.scandir(root)), 3)
        cleanup = not args.store or args.cleanup
        if cleanup:
            cleanup_s = timed(lambda: store.cleanup(timedelta(days=30)), 1)[0] / 1000

        print(f"\n{'measure':46}{'median ms':>11}{'p95 ms':>10}")
        for label, samples in rows:
            print(f"{label:46}{statistics.median(samples):>11.2f}{p95(samples):>10.2f}")
        base = statistics.median(baseline)
        print(f"{'first page by plain JSON scan':46}{base:>11.1f}{p95(baseline):>10.1f}")
        print(f"\nfirst page: index {statistics.median(rows[0][1]):.2f} ms vs scan {base:.0f} ms "
              f"= {base / statistics.median(rows[0][1]):.0f}x faster")
        print(f"CSV export of {operations:,} (flask history export): {export_s:.2f} s, "
              f"peak {export_mb:.0f} MB "
              f"({(work / 'export.csv').stat().st_size / 1e6:.1f} MB of CSV)")
        print(f"first start-up with no index (it builds it): {startup_s:.2f} s, "
              f"peak {startup_mb:.0f} MB")
        print(f"reindex of {operations:,} (flask history reindex): {reindex_s:.2f} s, "
              f"peak {reindex_mb:.0f} MB")
        turn = statistics.median(recovery) + statistics.median(check)
        print(f"recovery turn: sweep (temp files, orphans, lost workflows) median "
              f"{statistics.median(recovery) / 1000:.2f} s (max {max(recovery) / 1000:.2f}), "
              f"index check {statistics.median(check) / 1000:.2f} s "
              f"(max {max(check) / 1000:.2f}); listing the folder "
              f"{statistics.median(listing) / 1000:.2f} s ({turn / statistics.median(listing):.1f}x)")
        if cleanup:
            print(f"30-day clean-up: {cleanup_s:.2f} s, "
                  f"{len(list(store.index.ids())):,} operations left")
        print(f"benchmark process peak memory (the plain scan holds every record): "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
