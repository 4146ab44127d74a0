"""How much `import keras_transfer` costs on top of `import tensorflow, keras`.

Each measurement is a fresh interpreter (a cold import), timed inside the
process so that interpreter start-up is left out. The two imports alternate,
so drift of the machine hits both alike. Prints a table and writes JSON.

    python examples/benchmarks/import_time.py [--repeats 5]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

TIMED = (
    "import time; start = time.perf_counter(); import {modules}; print(time.perf_counter() - start)"
)
CASES = {
    "tensorflow, keras": "tensorflow, keras",
    "keras_transfer": "keras_transfer",
}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def cold_import_seconds(modules):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", TIMED.format(modules=modules)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(RESULTS, "import_time.json"))
    args = parser.parse_args()

    cold_import_seconds("tensorflow, keras")  # warm the file cache once, untimed
    times = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, modules in CASES.items():
            times[name].append(cold_import_seconds(modules))
    medians = {name: statistics.median(values) for name, values in times.items()}
    extra = medians["keras_transfer"] - medians["tensorflow, keras"]

    print(f"cold import, median of {args.repeats} fresh interpreters (seconds)")
    print(f"{'import':<20} {'median':>8} {'min':>8} {'max':>8}")
    for name, values in times.items():
        print(f"{name:<20} {medians[name]:>8.3f} {min(values):>8.3f} {max(values):>8.3f}")
    print(f"{'keras_transfer extra':<20} {extra:>8.3f}   (budget 0.300)")

    payload = {
        "benchmark": "import_time",
        "repeats": args.repeats,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "seconds": times,
        "median_seconds": medians,
        "extra_seconds": extra,
        "budget_seconds": 0.3,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(args.out + ".tmp", args.out)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
