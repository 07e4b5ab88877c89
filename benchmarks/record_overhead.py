"""What recording costs: text-to-image with recording on against recording off.

Runs the real route in-process (Flask's test client) on a 1024x1024 JPEG
result, alternating the two settings request by request so that both see the
same machine state, and also times the decorator's record step itself (files
described, hashed, written and fsynced, then the JSON). Prints median, 95th
percentile, the ratio on/off, and the process's peak memory.

    .venv/bin/python benchmarks/record_overhead.py [--requests 200] [--dir PATH]
"""

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation_studio import create_app, recording  # noqa: E402

PAYLOAD = {"prompt": "a lighthouse on a cliff by the sea at sunset", "aspectRatio": "1:1",
           "seed": 1234, "outputFormat": "jpg"}


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed_record_step(samples):
    """Wrap recording._record so each call's duration lands in ``samples``."""
    inner = recording._record

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            samples.append(time.perf_counter() - start)

    recording._record = wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--dir", help="storage folder's parent (default: a temp folder here)")
    args = parser.parse_args()

    parent = Path(args.dir or Path(__file__).resolve().parent / "out")
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent) as folder:
        app = create_app({"STORAGE_DIR": folder, "LOG_LEVEL": "WARNING"})
        client = app.test_client()
        record_step = []
        timed_record_step(record_step)
        times = {True: [], False: []}
        for _ in range(5):  # warm-up: imports, first allocations
            client.post("/api/generate/text-to-image", json=PAYLOAD)
        record_step.clear()
        for n in range(2 * args.requests):
            enabled = n % 2 == 0
            app.config["RECORDING_ENABLED"] = enabled
            start = time.perf_counter()
            response = client.post("/api/generate/text-to-image", json=PAYLOAD)
            times[enabled].append(time.perf_counter() - start)
            assert response.status_code == 200, response.get_json()
        saved = len(list(Path(folder).glob("*.json")))

    ms = lambda s: s * 1000  # noqa: E731
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"text-to-image, 1024x1024 JPEG, {args.requests} requests each way "
          f"({saved} operations saved)")
    print(f"{'':24}{'median ms':>11}{'p95 ms':>9}")
    print(f"{'recording on':24}{ms(on):11.2f}{ms(percentile(times[True], 95)):9.2f}")
    print(f"{'recording off':24}{ms(off):11.2f}{ms(percentile(times[False], 95)):9.2f}")
    print(f"{'record step alone':24}{ms(statistics.median(record_step)):11.2f}"
          f"{ms(percentile(record_step, 95)):9.2f}")
    print(f"recording adds {ms(statistics.median(record_step)):.2f} ms per request at the median "
          f"(the record step); ratio on/off of whole requests: {on / off:.3f} "
          f"(difference of medians {ms(on - off):+.2f} ms: the off baseline returns the picture "
          "inline as a data URL instead)")
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
