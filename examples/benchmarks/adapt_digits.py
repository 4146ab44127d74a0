"""Unsupervised domain adaptation on digits, MNIST -> USPS and USPS -> MNIST, with the anchors'
recipe.

    python examples/benchmarks/adapt_digits.py [--tasks mnist-usps usps-mnist] \
        [--rows "source only" DANN MCC ...] [--seeds 0 1 2] [--steps 5000] [--data ../shared/data] \
        [--jobs 2]

Data, the ADDA protocol (Tzeng et al. 2017): 2,000 MNIST images (drawn per seed
from the 10,000-image MNIST test set in shared/data/mnist) and 1,800 USPS
training images (drawn per seed). USPS is put in MNIST's frame: 3 pixels of
padding per side, then 16 -> 22 -> 28 (`kt.resize_images(..., pad=3)`), as the
CoGAN, SHOT and MCD code do. MNIST -> USPS tests on the 2,007 USPS test images,
USPS -> MNIST on the 8,000 MNIST images not drawn. The target trains without
labels.

Recipe (keras_transfer.adapt.recipe, read from TLlib, CDAN and SHOT): the LeNet of
`adapt.digit_networks()` (inputs to [-1, 1], dropout, a 256-wide BatchNorm
bottleneck that sees both domains as one batch), `adapt.adaptation_optimizer()`
(SGD Nesterov 0.9, weight decay 1e-3, 0.01 x (1 + 0.001 i)^-0.75), batch 64 per
domain, the same number of steps and the same initial weights for every row.
Each adapter runs with its library defaults and `DANNSchedule` ramping its
strength (learning rate left to the optimizer's own decay). No setting looks at
target labels.

Rows AdaBN, TENT and SHOT adapt the source-only model of the same task and seed,
saved as a .keras file, with the unlabelled target training images and no
source data, each with its library defaults.

Per run: target accuracy, the share of target test images given the most
frequent class (1.0 is a collapse), seconds per step (median of per-step times
after the first 10; for AdaBN, TENT and SHOT the seconds of the whole
adaptation). The JSON (results/adapt_digits.json) is rewritten after
every run, so a stopped run keeps what it measured; rerunning skips the runs
already there. About 1-2 min per source-only run and 2-5 min per adapter run
on 2 cores at 5,000 steps; one (task, seed) with every row ~25 min, the whole
benchmark ~3 h in one process. `--jobs 2` runs one worker process per (task,
seed), two at a time on one TensorFlow thread each (ADAPT's subprocess too):
measured here, a DANN step takes 27 ms on two threads and 39 ms on one, and two
one-thread runs side by side keep 39 ms each, so ~1.4x the throughput (~2 h
for the whole benchmark); s/step is then a one-thread figure for every row.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
from fashion_common import RESULTS
from fashion_common import StepTimer
from fashion_common import mean_std
from fashion_common import print_table
from fashion_common import sparse_ce
from fashion_common import write_json

import keras_transfer as kt
from keras_transfer import adapt

BATCH = 64
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "..", "shared", "data")
JSON = "adapt_digits.json"
ANCHORS = {
    "MNIST -> USPS": {"ADDA source only": 75.2, "ADDA gradient reversal": 77.1, "ADDA": 89.4},
    "USPS -> MNIST": {"ADDA source only": 57.1, "ADDA gradient reversal": 73.0, "ADDA": 90.1},
    "MNIST -> MNIST-M": {"DANN paper source only": 52.25, "DANN paper DANN": 76.66},
}
GOALS = {  # issue 18, mean of 3 seeds
    "MNIST -> USPS": {"source only": 80.0, "DANN": 90.0},
    "USPS -> MNIST": {"source only": 70.0, "DANN": 90.0},
    "MNIST -> MNIST-M": {"DANN": 80.0},
}
TASKS = {
    "mnist-usps": ("MNIST -> USPS", "mnist", "usps"),
    "usps-mnist": ("USPS -> MNIST", "usps", "mnist"),
    "mnist-mnistm": ("MNIST -> MNIST-M", "mnist32", "mnistm"),
}
# MNIST -> MNIST-M runs four rows (issue 18) on colour images: MNIST test 0-4,499 padded to 32x32
# and repeated over 3 channels (labelled source), MNIST-M test 4,500-9,000 (the unlabelled target,
# tested on the same images: transductive, as the DANN paper).
TASK_ROWS = {"mnist-mnistm": ("source only", "DANN", "CDAN+E", "SHOT")}
INPUT_SHAPES = {"mnist-mnistm": (32, 32, 3)}
ROWS = {
    "source only": None,
    "DANN": adapt.DANN,
    "CDAN": lambda b, c: adapt.CDAN(b, c, entropy_conditioning=False),
    "CDAN+E": adapt.CDAN,
    "MCC": adapt.MCC,
    "MMD (DAN)": lambda b, c: adapt.DiscrepancyAdapter(b, c, discrepancy="mmd"),
    "Deep CORAL": lambda b, c: adapt.DiscrepancyAdapter(b, c, discrepancy="coral"),
    "CMD": lambda b, c: adapt.DiscrepancyAdapter(b, c, discrepancy="cmd"),
}
# Test-time and source-free rows: they adapt the source-only model of the same task and seed (a
# .keras file, as a user ships it) with the unlabelled target training images alone.
SOURCE_FREE = {"AdaBN": adapt.adabn, "TENT": adapt.tent, "SHOT": adapt.shot}
MODELS = os.path.join(RESULTS, "adapt_digits_models")  # ignored by git: products of a run
# The peer: ADAPT 0.4.5 (pip adapt, scikeras, cvxopt) on tf.keras in a subprocess (adapt_peer.py),
# from the initial weights of our model of the same seed (its default discriminator included).
PEER = {"ADAPT DANN": adapt.DANN, "ADAPT CDAN": adapt.CDAN, "ADAPT MDD": None}


def load_domains(data_dir, seed):
    """Per domain: train images and labels (drawn per seed) and test images and labels."""
    x_mnist, y_mnist = kt.load_mnist(os.path.join(data_dir, "mnist"), split="test")
    usps = os.path.join(data_dir, "usps", "usps.h5")
    x_usps, y_usps = kt.load_usps(usps, split="train")
    x_usps_test, y_usps_test = kt.load_usps(usps, split="test")
    rng = np.random.default_rng(seed)
    mnist_pick = rng.choice(len(x_mnist), 2000, replace=False)
    usps_pick = rng.permutation(len(x_usps))[:1800]
    rest = np.setdiff1d(np.arange(len(x_mnist)), mnist_pick)
    in_mnist_frame = lambda x: kt.resize_images(x, (28, 28), pad=3)  # noqa: E731
    x_colour, y_colour = kt.load_mnist_m(os.path.join(data_dir, "mnist_m"))
    return {
        "mnist32": {
            "train": (kt.resize_images(x_mnist[:4500], (32, 32), channels=3, pad=2), y_mnist[:4500])
        },
        "mnistm": {"train": (x_colour[4500:], None), "test": (x_colour[4500:], y_colour[4500:])},
        "mnist": {
            "train": (x_mnist[mnist_pick], y_mnist[mnist_pick]),
            "test": (x_mnist[rest], y_mnist[rest]),
        },
        "usps": {
            "train": (in_mnist_frame(x_usps[usps_pick]), y_usps[usps_pick]),
            "test": (in_mnist_frame(x_usps_test), y_usps_test),
        },
    }


def networks(task):
    return adapt.digit_networks(input_shape=INPUT_SHAPES.get(task, (28, 28, 1)))


def train_source_only(task, x_source, y_source, seed, steps, callbacks=()):
    """The recipe's networks trained on the labelled source alone."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(list(networks(task)))
    model.compile(adapt.adaptation_optimizer(), sparse_ce(), metrics=["accuracy"])
    per_epoch = len(x_source) // BATCH
    epochs = -(-steps // per_epoch)
    model.fit(x_source, y_source, batch_size=BATCH, epochs=epochs, verbose=0, callbacks=callbacks)
    return model


def source_model_file(task, seed, steps):
    return os.path.join(MODELS, f"{task}-seed{seed}-steps{steps}.keras")


def peer_available():
    check = "import adapt.feature_based"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    return (
        subprocess.run([sys.executable, "-c", check], env=env, capture_output=True).returncode == 0
    )


def run_peer(row, x_source, y_source, target_x, x_test, seed, steps):
    """ADAPT's method in a tf.keras subprocess: (test predictions, per-step seconds)."""
    keras.utils.set_random_seed(seed)
    backbone, classifier = adapt.digit_networks()
    parts = {"backbone": backbone, "classifier": classifier}
    if PEER[row] is not None:
        parts["discriminator"] = PEER[row](backbone, classifier).discriminator
    weights = {
        f"{name}_{i}": w for name, model in parts.items() for i, w in enumerate(model.get_weights())
    }
    settings = {"method": row.split()[-1], "steps": steps, "batch_size": BATCH, "seed": seed}
    with tempfile.TemporaryDirectory() as folder:
        given, returned = os.path.join(folder, "in.npz"), os.path.join(folder, "out.npz")
        np.savez(
            given,
            x_source=x_source,
            y_source=y_source,
            x_target=target_x,
            x_test=x_test,
            settings=json.dumps(settings),
            **weights,
        )
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
        done = subprocess.run(
            [sys.executable, os.path.join(HERE, "adapt_peer.py"), given, returned],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"adapt_peer.py failed for {row}:\n{done.stderr[-3000:]}")
        out = np.load(returned)
        return out["test_predictions"], list(out["step_seconds"])


def run(row, domains, task, seed, steps):
    """One row on one task and seed: the trained model's target accuracy, collapse, s/step."""
    _, source_name, target_name = TASKS[task]
    (x_source, y_source), target_x = domains[source_name]["train"], domains[target_name]["train"][0]
    x_test, y_test = domains[target_name]["test"]
    timer = StepTimer()
    source_file = source_model_file(task, seed, steps)
    if row == "source only":
        model = train_source_only(task, x_source, y_source, seed, steps, [timer])
        os.makedirs(MODELS, exist_ok=True)
        model.save(source_file)
        seconds = timer.seconds
    elif row in PEER:
        predicted, seconds = run_peer(row, x_source, y_source, target_x, x_test, seed, steps)
    elif row in SOURCE_FREE:
        if not os.path.exists(source_file):
            os.makedirs(MODELS, exist_ok=True)
            train_source_only(task, x_source, y_source, seed, steps).save(source_file)
        start = time.perf_counter()
        model = SOURCE_FREE[row](source_file, target_x)
        seconds = [time.perf_counter() - start]  # the whole adaptation, reported as one "step"
    else:
        keras.utils.set_random_seed(seed)
        model = ROWS[row](*networks(task))
        model.compile(adapt.adaptation_optimizer(), metrics=["accuracy"])
        pairs = kt.domain_pairs((x_source, y_source), target_x, batch_size=BATCH, seed=seed)
        schedule = adapt.DANNSchedule(schedule_learning_rate=False)
        model.fit(pairs, epochs=-(-steps // len(pairs)), verbose=0, callbacks=[timer, schedule])
        seconds = timer.seconds
    if row not in PEER:
        predicted = np.argmax(model.predict(x_test, batch_size=1000, verbose=0), -1)
    return {
        "seed": seed,
        "steps": len(seconds),
        "accuracy": float(np.mean(predicted == y_test)),
        "largest_class_share": float(np.bincount(predicted, minlength=10).max() / len(predicted)),
        "seconds_per_step": statistics.median(seconds[10:] or seconds),
    }


def summary(results):
    """Mean and std over seeds per task and row, and the table."""
    header = ["task", "row", "target accuracy %", "seeds", "largest class", "s/step", "goal"]
    table = []
    for task, by_row in results.items():
        for row, entry in by_row.items():
            runs = entry["runs"]
            mean, std = mean_std([r["accuracy"] for r in runs])
            goal = GOALS.get(task, {}).get(row)
            entry.update(
                accuracy_mean=mean,
                accuracy_std=std,
                seconds_per_step_median=statistics.median(r["seconds_per_step"] for r in runs),
                largest_class_share_max=max(r["largest_class_share"] for r in runs),
            )
            table.append(
                [
                    task,
                    row,
                    f"{100 * mean:.2f} ± {100 * std:.2f}",
                    str(len(runs)),
                    f"{entry['largest_class_share_max']:.2f}",
                    f"{entry['seconds_per_step_median']:.0f} s in all"
                    if row in SOURCE_FREE
                    else f"{entry['seconds_per_step_median'] * 1000:.0f} ms",
                    ""
                    if goal is None
                    else f">= {goal:g}: {'met' if 100 * mean >= goal else 'NOT met'}",
                ]
            )
    return header, table


def markdown(results):
    """The README's table: one line per row, both tasks side by side."""
    tasks = [name for name, _, _ in TASKS.values()]
    lines = [
        "| row | " + " | ".join(f"{t} % | largest class | time" for t in tasks) + " |",
        "|---|" + "---:|---:|---:|" * len(tasks),
    ]
    for row in [*ROWS, *SOURCE_FREE, *PEER]:
        cells = []
        for task in tasks:
            entry = results.get(task, {}).get(row)
            if not entry:
                cells += ["", "", ""]
                continue
            time_cell = (
                f"{entry['seconds_per_step_median']:.0f} s"
                if row in SOURCE_FREE
                else f"{entry['seconds_per_step_median'] * 1000:.0f} ms/step"
            )
            cells += [
                f"{100 * entry['accuracy_mean']:.1f} ± {100 * entry['accuracy_std']:.1f}"
                + ("" if len(entry["runs"]) == 3 else f" ({len(entry['runs'])} seed)"),
                f"{entry['largest_class_share_max']:.2f}",
                time_cell,
            ]
        if any(cells):
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save(json_name, steps, results):
    """Writes the results (and their summary) to the JSON, as after every run."""
    summary(results)
    write_json(
        json_name,
        {
            "benchmark": "adapt_digits",
            "steps": steps,
            "batch_size": BATCH,
            "recipe": "adapt.digit_networks + adapt.adaptation_optimizer, library "
            "defaults, DANNSchedule on the strength",
            "train": "2,000 MNIST (test set) + 1,800 USPS train, drawn per seed; "
            "USPS padded 3 px per side, resized to 28x28",
            "test": {
                "MNIST -> USPS": "USPS test (2,007)",
                "USPS -> MNIST": "the 8,000 MNIST images not drawn",
            },
            "anchors_adda_paper": ANCHORS,
            "goals": GOALS,
            "version": kt.__version__,
            "rows": results,
        },
    )


def merge(results, path, steps):
    """Adds the runs of the JSON at `path` (a worker's), if at `steps`, to `results`; True if
    the file was there."""
    if not os.path.exists(path):
        return False
    measured = json.load(open(path))
    for name, by_row in (measured["rows"] if measured.get("steps") == steps else {}).items():
        for row, entry in by_row.items():
            runs = results.setdefault(name, {}).setdefault(row, {"runs": []})["runs"]
            seeds = {r["seed"] for r in runs}
            runs += [r for r in entry["runs"] if r["seed"] not in seeds]
    return True


def run_parallel(args, results):
    """One worker process per (seed, task), `args.jobs` at a time, each on one TensorFlow thread
    (on 2 cores two one-thread runs give ~1.4x the steps per second of one two-thread run).
    Each worker writes its own JSON after every run; its runs join the main JSON when it ends,
    or at the next start if this process was stopped."""
    stem = os.path.splitext(os.path.basename(args.json))[0]
    shard = lambda task, seed: os.path.join(RESULTS, f"{stem}.part-{task}-seed{seed}.json")  # noqa: E731
    pending = [(task, seed) for seed in args.seeds for task in args.tasks]
    for task, seed in pending:  # left by a stopped run
        if merge(results, shard(task, seed), args.steps):
            save(args.json, args.steps, results)
            os.remove(shard(task, seed))
    env = {**os.environ, "ADAPT_DIGITS_THREADS": "1"}
    running = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            task, seed = pending.pop(0)
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--tasks",
                task,
                "--seeds",
                str(seed),
                "--rows",
                *args.rows,
                "--steps",
                str(args.steps),
                "--data",
                args.data,
                "--json",
                shard(task, seed),
                "--skip-done",
                args.json,
            ]
            running[(task, seed)] = subprocess.Popen(command, env=env)
        time.sleep(2)
        for key, process in list(running.items()):
            if process.poll() is None:
                continue
            del running[key]
            if merge(results, shard(*key), args.steps):
                save(args.json, args.steps, results)
                os.remove(shard(*key))
            if process.returncode != 0:
                print(f"worker {key} failed (exit {process.returncode})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    every_row = [*ROWS, *SOURCE_FREE, *PEER]
    parser.add_argument("--rows", nargs="+", default=every_row, choices=every_row)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--fresh", action="store_true", help="ignore runs already in the JSON")
    parser.add_argument("--json", default=JSON, help="results file (in results/ unless a path)")
    parser.add_argument("--table", action="store_true", help="print the JSON's README table")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs in parallel, one thread each (2 on 2 cores)"
    )
    parser.add_argument("--skip-done", help=argparse.SUPPRESS)  # a worker: the main JSON
    args = parser.parse_args()
    if args.table:
        rows = json.load(open(os.path.join(RESULTS, args.json)))["rows"]
        summary(rows)
        print(markdown(rows))
        return
    if os.environ.get("ADAPT_DIGITS_THREADS"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(
            int(os.environ["ADAPT_DIGITS_THREADS"])
        )
        tf.config.threading.set_inter_op_parallelism_threads(
            int(os.environ["ADAPT_DIGITS_THREADS"])
        )

    path = os.path.join(RESULTS, args.json)
    earlier = {} if args.fresh or not os.path.exists(path) else json.load(open(path))
    same = earlier.get("steps") == args.steps
    results = earlier.get("rows", {}) if same else {}
    done = {}
    if args.skip_done:
        merge(done, os.path.join(RESULTS, args.skip_done), args.steps)
    if any(row in PEER for row in args.rows) and not peer_available():
        print("ADAPT is not installed (pip install adapt==0.4.5 scikeras cvxopt): no ADAPT rows")
        args.rows = [row for row in args.rows if row not in PEER]
    if args.jobs > 1:
        run_parallel(args, results)
        print_table(*summary(results))
        return
    for seed in args.seeds:
        domains = load_domains(args.data, seed)
        for task in args.tasks:
            name = TASKS[task][0]
            for row in args.rows:
                if row not in TASK_ROWS.get(task, (row,)):
                    continue
                finished = [
                    r
                    for measured in (results, done)
                    for r in measured.get(name, {}).get(row, {"runs": []})["runs"]
                ]
                if any(r["seed"] == seed for r in finished):
                    continue  # no entry made: a worker's JSON holds only the rows it ran
                outcome = run(row, domains, task, seed, args.steps)
                results.setdefault(name, {}).setdefault(row, {"runs": []})["runs"].append(outcome)
                print(
                    f"  {name} {row} seed {seed}: {100 * outcome['accuracy']:.2f}% "
                    f"(largest class {outcome['largest_class_share']:.2f}, "
                    + (
                        f"{outcome['seconds_per_step']:.1f} s in all)"
                        if row in SOURCE_FREE
                        else f"{1000 * outcome['seconds_per_step']:.0f} ms/step)"
                    ),
                    flush=True,
                )
                save(args.json, args.steps, results)
    print_table(*summary(results))


if __name__ == "__main__":
    main()
