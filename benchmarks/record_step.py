"""The record step against its physical floor, side by side in one run.

The record step is what the studio does to keep an operation: its files, its
JSON record and its index row (``studio_record_step`` below). The floor is the
same bytes written with the same durability in a plain loop: each file (the
input, the result, the JSON) to a temp name, written, fsynced and renamed onto
its name, then one fsync of the folder. Both run on a realistic img-to-img
operation (a ~200 kB PNG input, a 1024x1024 JPEG result, a record of the size
the studio writes), all bytes made before the clock starts, in turn (in a
random order each round, so that drift and cache effects fall on all alike).
Prints median, p95 and mean of each, the ratios studio/floor, the peak memory
and the machine. Target (issue 12, item 6): ratio of medians within 1.5.

The durability is the same, not the order of the work: the studio fsyncs each
data file on a helper thread while it writes the next one (``AtomicFiles``),
where the plain loop waits for each fsync in turn. So that the studio's own
work (hashing, the JSON, the index row) stays in sight, a third side, the
"overlapped floor", writes the same bytes with the studio's order of fsyncs
and nothing else; studio/overlapped floor is that work's cost.

    .venv/bin/python benchmarks/record_step.py [--n 300] [--dir PATH] [--cprofile]
"""

import argparse
import copy
import gc
import io
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

try:  # where the record step lives now ...
    from generation_studio.history import HistoryService

    def open_studio(root: Path):
        service = HistoryService(root, root / ".index" / "history.sqlite3")
        service.start(wait=True)  # as the app does: folder made, index checked
        return service
except ImportError:  # ... and where it lived before
    from generation_studio.index import OperationIndex
    from generation_studio.store import OperationStore

    def open_studio(root: Path):
        root.mkdir(parents=True, exist_ok=True)
        return OperationStore(root, OperationIndex(root / ".index" / "history.sqlite3"))


def studio_record_step(studio, record: dict, inputs, outputs) -> dict:
    """The timed call: files, record and index row of one operation."""
    return studio.save(record, inputs=inputs, outputs=outputs)


TARGET_RATIO = 1.5
TEMPLATE = {  # a finished img-to-img operation, as the studio records one
    "operationType": "img_to_img",
    "status": "succeeded",
    "createdAt": "2026-11-25T10:41:07.412Z",
    "startedAt": "2026-11-25T10:41:07.431Z",
    "completedAt": "2026-11-25T10:41:12.905Z",
    "durationMs": 5493.2,
    "progress": 1.0,
    "prompt": "a lighthouse on a cliff by the sea at sunset, oil painting, dramatic sky, "
              "warm light on the rocks, seagulls, highly detailed",
    "parameters": {"prompt": "a lighthouse on a cliff by the sea at sunset, oil painting, "
                             "dramatic sky, warm light on the rocks, seagulls, highly detailed",
                   "negativePrompt": "blurry, low quality, watermark, text",
                   "strength": "0.65", "aspectRatio": "1:1", "seed": "1234",
                   "outputFormat": "jpg", "guidanceScale": "7.5", "steps": "30"},
    "task": {"operation": "img_to_img",
             "params": {"prompt": "a lighthouse on a cliff by the sea at sunset, oil painting, "
                                  "dramatic sky, warm light on the rocks, seagulls, highly "
                                  "detailed",
                        "negative_prompt": "blurry, low quality, watermark, text",
                        "strength": 0.65, "width": 1024, "height": 1024, "seed": 1234,
                        "output_format": "jpg", "guidance_scale": 7.5,
                        "num_inference_steps": 30}},
    "resultUrl": "https://fal.media/files/lion/Xk3q9ZtR2mW8pVbN5cLdE_output.jpg",
    "resultUrls": ["https://fal.media/files/lion/Xk3q9ZtR2mW8pVbN5cLdE_output.jpg"],
    "workflowAnalysis": None,
    "error": None,
    "errorType": None,
    "provider": {"name": "fal", "model": "fal-ai/flux/dev/image-to-image",
                 "requestId": "5b1f6a0e-3c2d-4e8f-9a71-0d4c2b7e9f13", "seed": 1234,
                 "inferenceMs": 4870.6, "hasNsfwConcepts": [False]},
}


def make_image(size, fmt: str, blur: float) -> bytes:
    """A photo-like picture (gradients and blurred noise), encoded as ``fmt``."""
    from PIL import Image, ImageFilter

    noise = Image.effect_noise(size, 64).filter(ImageFilter.GaussianBlur(blur))
    red = Image.blend(Image.radial_gradient("L").resize(size), noise, 0.5)
    green = Image.blend(Image.linear_gradient("L").resize(size), noise, 0.3)
    blue = Image.effect_noise(size, 45).filter(ImageFilter.GaussianBlur(blur * 1.5))
    out = io.BytesIO()
    Image.merge("RGB", (red, green, blue)).save(out, fmt, **({"quality": 90} if fmt == "JPEG"
                                                             else {}))
    return out.getvalue()


def write_durably(folder: str, name: str, data: bytes) -> None:
    """Temp name, write, fsync, rename: the floor's way to write one file."""
    path = os.path.join(folder, name)
    tmp = os.path.join(folder, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def floor_record_step(folder: str, stem: str, files) -> None:
    """The same bytes, same durability, nothing else: each file, then the folder."""
    for suffix, data in files:
        write_durably(folder, stem + suffix, data)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def overlapped_floor_record_step(folder: str, stem: str, files, pool) -> None:
    """The same bytes and fsyncs in the studio's order: every file written to
    its temp name, the data files fsynced on helper threads meanwhile, the
    last one here; then the renames and the folder's fsync."""
    def fsync_and_close(fd):
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    renames, waits = [], []
    for n, (suffix, data) in enumerate(files):
        path = os.path.join(folder, stem + suffix)
        tmp = os.path.join(folder, f".{stem}{suffix}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if n < len(files) - 1:
            waits.append(pool.submit(fsync_and_close, fd))
        else:
            fsync_and_close(fd)
        renames.append((tmp, path))
    for wait in waits:
        wait.result()
    for tmp, path in renames:
        os.replace(tmp, path)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def filesystem_of(path: Path) -> str:
    """``type (device) mounted on <point>`` for the mount holding ``path``."""
    path, best = str(path.resolve()), None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, right = line.split(" - ", 1)
                point = left.split()[4].replace("\\040", " ")
                fstype, device = right.split()[:2]
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and (best is None or len(point) >= len(best[0])):
                    best = (point, fstype, device)
    except OSError:
        return "unknown (no /proc/self/mountinfo)"
    return f"{best[1]} ({best[2]}) mounted on {best[0]}" if best else "unknown"


def machine(folder: Path, repo: Path) -> list[str]:
    from PIL import __version__ as pillow

    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        ram = float("nan")
    same = os.stat(folder).st_dev == os.stat(repo).st_dev
    return [f"machine: {os.cpu_count()} cores, {ram:.1f} GiB RAM, {platform.platform()}",
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"Pillow {pillow}",
            f"folder: {folder} on {filesystem_of(folder)}; same filesystem as {repo}: "
            f"{'yes' if same else 'NO'}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="operations each way (default 300)")
    parser.add_argument("--dir", help="parent of the temp folder (default: "
                                      "<system temp>/generation-studio-bench)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--cprofile", action="store_true",
                        help="then profile --n more studio steps and print the top functions")
    args = parser.parse_args()

    repo = Path(__file__).resolve().parent.parent
    parent = Path(args.dir or Path(tempfile.gettempdir()) / "generation-studio-bench")
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=parent, prefix="record-step-"))
    try:
        run(args, folder, repo)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def run(args, folder: Path, repo: Path):
    result = make_image((1024, 1024), "JPEG", 1.0)
    source = make_image((512, 512), "PNG", 2.0)
    inputs = [(source, "holiday photo.png")]
    studio = open_studio(folder / "studio")
    for name in ("floor", "overlapped"):
        (folder / name).mkdir()
    pool = ThreadPoolExecutor(max_workers=4)

    # Warm-up (imports, first allocations, the index's first pages); the JSON
    # the studio wrote is the floor's JSON: same size, same bytes but the ids.
    for _ in range(5):
        saved = studio_record_step(studio, copy.deepcopy(TEMPLATE), inputs, [result])
    record_bytes = (folder / "studio" / f"{saved['operationId']}.json").read_bytes()
    files = [("_in_0.png", source), ("_out.jpg", result), (".json", record_bytes)]
    steps = {
        "studio": lambda i: studio_record_step(studio, records[i], inputs, [result]),
        "floor": lambda i: floor_record_step(str(folder / "floor"), f"op{i:06d}", files),
        "overlapped": lambda i: overlapped_floor_record_step(str(folder / "overlapped"),
                                                             f"op{i:06d}", files, pool),
    }
    records = [copy.deepcopy(TEMPLATE) for _ in range(args.n + 5)]
    for w in range(5):
        for side in ("floor", "overlapped"):
            steps[side](args.n + w)

    # The three in a random order each round, so that drift and cache effects
    # fall on all alike.
    times = {side: [] for side in steps}
    order, shuffle = list(steps), random.Random(12).shuffle
    gc.collect()
    clock = time.perf_counter
    for i in range(args.n):
        shuffle(order)
        for side in order:
            start = clock()
            steps[side](i)
            times[side].append(clock() - start)

    # Peak memory: the process's max RSS, and what one more step of each
    # allocates at most (tracemalloc, outside the timed loop: it slows Python).
    peaks = {}
    records.append(copy.deepcopy(TEMPLATE))
    for side, step in steps.items():
        tracemalloc.start()
        step(len(records) - 1)
        peaks[side] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    pool.shutdown()

    ms = 1000
    stats = {side: (statistics.median(t) * ms, percentile(t, 95) * ms, statistics.mean(t) * ms)
             for side, t in times.items()}
    print("record step vs physical floor: img-to-img, 1 input PNG "
          f"({len(source) / 1000:.0f} kB), 1 result 1024x1024 JPEG ({len(result) / 1000:.0f} kB), "
          f"record JSON ({len(record_bytes):,} B); {args.n} operations each way, in turn")
    for line in machine(folder, repo):
        print(line)
    print(f"{'':12}{'median ms':>11}{'p95 ms':>9}{'mean ms':>9}{'peak alloc':>12}")
    labels = {"studio": "studio (files + record + index)",
              "floor": "floor: plain loop, 3 x (write, fsync, rename), 1 folder fsync",
              "overlapped": "the same bytes and fsyncs in the studio's order, nothing else"}
    for side in steps:
        median, p95, mean = stats[side]
        print(f"{side:12}{median:11.2f}{p95:9.2f}{mean:9.2f}{peaks[side] / 2**20:10.2f} MB"
              f"   {labels[side]}")
    ratio_median = stats["studio"][0] / stats["floor"][0]
    ratio_p95 = stats["studio"][1] / stats["floor"][1]
    verdict = "meets" if ratio_median <= TARGET_RATIO else "misses"
    print(f"ratio studio/floor: median {ratio_median:.2f}, p95 {ratio_p95:.2f}, mean "
          f"{stats['studio'][2] / stats['floor'][2]:.2f} ({verdict} the target of "
          f"{TARGET_RATIO} at the median); studio adds {stats['studio'][0] - stats['floor'][0]:+.2f} "
          "ms at the median")
    print(f"ratio studio/overlapped floor (the studio's own work): median "
          f"{stats['studio'][0] / stats['overlapped'][0]:.2f}, "
          f"{stats['studio'][0] - stats['overlapped'][0]:+.2f} ms; the overlap alone saves "
          f"{stats['floor'][0] - stats['overlapped'][0]:+.2f} ms of the plain loop's")
    print(f"peak memory (max RSS of the process): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    if args.cprofile:
        import cProfile
        import pstats

        more = [copy.deepcopy(TEMPLATE) for _ in range(args.n)]
        profiler = cProfile.Profile()
        profiler.enable()
        for record in more:
            studio_record_step(studio, record, inputs, [result])
        profiler.disable()
        print(f"\ncProfile of {args.n} more studio steps (cumulative time):")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
