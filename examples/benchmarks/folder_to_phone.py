"""Folder to phone: `keras-transfer train` on MNIST-M image folders, as a user runs it.

    python examples/benchmarks/folder_to_phone.py [--seeds 0 1 2] [--table]

The folders come from `examples/image_folders.py` (300 MNIST-M PNGs per class; a "shifted"
folder: 4,500 other MNIST-M images under uneven light, also given unlabelled). Each seed runs the
CLI twice with its defaults, timed as a whole command: without and with `--unlabelled`, both with
`--test shifted`; then `keras-transfer predict` on one held-out JPEG per class. Writes
results/folder_to_phone.json after every run. About 4-6 minutes per run on 2 cores.
"""

import argparse
import glob
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
RESULTS = os.path.join(HERE, "results")
JSON = os.path.join(RESULTS, "folder_to_phone.json")
DATA = os.environ.get(
    "KERAS_TRANSFER_SHARED_DATA",
    os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "shared", "data"),
)
ROWS = ("defaults", "defaults + --unlabelled shifted")


def cli(*args):
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "keras_transfer.cli", *args], capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"keras-transfer {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, time.perf_counter() - start


def one_run(folders, row, seed, scratch):
    out = os.path.join(scratch, f"out-{seed}-{ROWS.index(row)}")
    args = ["train", os.path.join(folders, "photos"), "--out", out, "--seed", str(seed)]
    args += ["--test", os.path.join(folders, "shifted"), "--quiet"]
    if "unlabelled" in row:
        args += ["--unlabelled", os.path.join(folders, "unlabelled")]
    _, seconds = cli(*args)
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    images = sorted(glob.glob(os.path.join(folders, "new", "*.jpg")))
    printed, _ = cli("predict", os.path.join(out, "model.tflite"), *images, "--top-k", "1")
    right = 0
    for line, path in zip(printed.strip().splitlines(), images):
        truth = re.search(r"digit(\d)_", os.path.basename(path)).group(1)
        right += line.split(": ", 1)[1].split()[0] == truth
    return {
        "seed": seed,
        "row": row,
        "seconds": seconds,
        "stages": report["stages"],
        "keras_test": report["keras_accuracy"]["test"],
        "tflite_test": report["tflite_accuracy"]["test"],
        "agreement": report["tflite"]["agreement_with_keras"],
        "keras_shifted": report["keras_accuracy"]["shifted"],
        "tflite_shifted": report["tflite_accuracy"]["shifted"],
        "tflite_kib": report["tflite"]["size_bytes"] / 1024,
        "latency_ms": report["tflite"]["latency_median_ms"],
        "predict_right": f"{right}/{len(images)}",
    }


def table(payload):
    rows = payload["runs"]
    keys = [
        ("seconds", "command s", 0),
        ("keras_test", "test (Keras)", 4),
        ("tflite_test", "test (int8)", 4),
        ("agreement", "int8 = Keras", 4),
        ("keras_shifted", "shifted (Keras)", 4),
        ("tflite_shifted", "shifted (int8)", 4),
    ]
    print("| row | seeds | " + " | ".join(k[1] for k in keys) + " | predict right |")
    print("|---|---:|" + "---:|" * len(keys) + "---|")
    for row in ROWS:
        runs = [r for r in rows if r["row"] == row]
        if not runs:
            continue
        cells = []
        for key, _, digits in keys:
            values = np.array([r[key] for r in runs], float)
            if key == "seconds":
                cells.append(f"{np.median(values):.0f} (median)")
            else:
                cells.append(f"{100 * values.mean():.2f} ± {100 * values.std():.2f}")
        right = ", ".join(r["predict_right"] for r in runs)
        print(f"| {row} | {len(runs)} | " + " | ".join(cells) + f" | {right} |")


def main(seeds, rows):
    from image_folders import make_folders

    payload = {"python": platform.python_version(), "cpus": os.cpu_count(), "runs": []}
    if os.path.exists(JSON):
        with open(JSON) as f:
            payload = json.load(f)
    with tempfile.TemporaryDirectory() as scratch:
        folders = make_folders(os.path.join(scratch, "folders"), DATA)
        for seed in seeds:
            for row in rows:
                result = one_run(folders, row, seed, scratch)
                payload["runs"] = [
                    r for r in payload["runs"] if (r["seed"], r["row"]) != (seed, row)
                ] + [result]
                os.makedirs(RESULTS, exist_ok=True)
                with open(JSON, "w") as f:
                    json.dump(payload, f, indent=1)
                print(json.dumps(result), flush=True)
    table(payload)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        with open(JSON) as f:
            table(json.load(f))
    else:
        main(args.seeds, args.rows)
