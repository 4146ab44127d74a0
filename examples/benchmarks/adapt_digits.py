"""Unsupervised domain adaptation on digits: MNIST -> USPS and USPS -> MNIST, ours beside ADAPT.

    python examples/benchmarks/adapt_digits.py [--seeds 0 1 2] [--epochs 15] \
        [--data ../shared/data] [--no-peer]

Protocol of the ADDA paper (Tzeng et al. 2017): 2,000 MNIST images (drawn per
seed from the 10,000-image MNIST test set in shared/data/mnist) and 1,800 USPS
training images (drawn per seed); both domains at 28x28. MNIST -> USPS tests on
the 2,007 USPS test images; USPS -> MNIST on the 8,000 MNIST images not drawn.
The target trains without labels. One LeNet-style network for every row (conv
20-5, pool, conv 50-5, pool, dense 500 as features; dense 10 classifier), the
same epochs, batch 64 per domain, Adam 2e-4, the same initial weights:
- source only: the network on source labels alone;
- DANN: gradient reversal, discriminator 500-500-1, lambda ramped by the
  paper's schedule (DANNSchedule, learning rate left to Adam) up to a
  lambda_max chosen from {0.1, 0.3, 1.0} WITHOUT target labels: the lowest
  importance-weighted validation loss (adapt.importance_weighted_risk) on
  1,000 held-out labelled source images (MNIST test images not drawn; USPS
  training images not drawn);
- MMD (DAN), Deep CORAL, CMD: DiscrepancyAdapter on the 500 features, weight
  ramped in by the same schedule (MMD and CMD 0.3, CORAL 1.0);
- ADAPT (pip `adapt` 0.4.5, on tf.keras 2 in a subprocess: adapt_peer.py):
  its DANN with the same network, initial weights, discriminator, data,
  optimizer, batch size, epochs, lambda ramp (its UpdateLambda, gamma 10) and
  the same lambda_max selection; its DeepCORAL at weight 1.0 ramped likewise.
Proxy A-distance of source-vs-target features (first 1,000 of each) after
training. Epoch seconds: median of per-epoch times after the first. Prints a
table and writes results/adapt_digits.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import keras
import numpy as np
from fashion_common import EpochTimer
from fashion_common import mean_std
from fashion_common import print_table
from fashion_common import sparse_ce
from fashion_common import write_json

import keras_transfer as kt
from keras_transfer import adapt

BATCH, LEARNING_RATE, LAMBDA_GRID, VALIDATION = 64, 2e-4, (0.1, 0.3, 1.0), 1000
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "..", "shared", "data")
ANCHORS = {
    "MNIST -> USPS": {"source only": 75.2, "gradient reversal": 77.1, "ADDA": 89.4},
    "USPS -> MNIST": {"source only": 57.1, "gradient reversal": 73.0, "ADDA": 90.1},
}
TASKS = {"MNIST -> USPS": ("mnist", "usps"), "USPS -> MNIST": ("usps", "mnist")}


def load_domains(data_dir, seed):
    """Per domain: train (drawn per seed), validation (labelled, not drawn) and test images."""
    x_mnist, y_mnist = kt.load_mnist(os.path.join(data_dir, "mnist"), split="test")
    x_usps, y_usps = kt.load_usps(os.path.join(data_dir, "usps", "usps.h5"), split="train")
    x_usps_test, y_usps_test = kt.load_usps(os.path.join(data_dir, "usps", "usps.h5"), split="test")
    rng = np.random.default_rng(seed)
    mnist_pick = rng.choice(len(x_mnist), 2000, replace=False)
    usps_order = rng.permutation(len(x_usps))
    usps_pick, usps_validation = usps_order[:1800], usps_order[1800 : 1800 + VALIDATION]
    rest = np.setdiff1d(np.arange(len(x_mnist)), mnist_pick)
    mnist_validation = rng.choice(rest, VALIDATION, replace=False)
    to28 = lambda x: kt.resize_images(x, (28, 28))  # noqa: E731
    return {
        "mnist": {
            "train": (x_mnist[mnist_pick], y_mnist[mnist_pick]),
            "validation": (x_mnist[mnist_validation], y_mnist[mnist_validation]),
            "test": (x_mnist[rest], y_mnist[rest]),
        },
        "usps": {
            "train": (to28(x_usps[usps_pick]), y_usps[usps_pick]),
            "validation": (to28(x_usps[usps_validation]), y_usps[usps_validation]),
            "test": (to28(x_usps_test), y_usps_test),
        },
    }


def lenet(seed):
    keras.utils.set_random_seed(seed)
    features = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(20, 5, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(50, 5, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(500, activation="relu", name="fc"),
        ],
        name="features",
    )
    classifier = keras.Sequential(
        [keras.Input((500,)), keras.layers.Dense(10, name="logits")], name="classifier"
    )
    discriminator = keras.Sequential(
        [
            keras.Input((500,)),
            keras.layers.Dense(500, activation="relu"),
            keras.layers.Dense(500, activation="relu"),
            keras.layers.Dense(1),
        ],
        name="discriminator",
    )
    return features, classifier, discriminator


def make_model(row, seed):
    features, classifier, discriminator = lenet(seed)
    if row == "source only":
        model = keras.Sequential([features, classifier])
        model.compile(keras.optimizers.Adam(LEARNING_RATE), sparse_ce(), metrics=["accuracy"])
        return model, features
    if row == "DANN":
        model = adapt.DANN(features, classifier, discriminator=discriminator)
    else:
        name, weight = {
            "MMD (DAN)": ("mmd", 0.3),
            "Deep CORAL": ("coral", 1.0),
            "CMD": ("cmd", 0.3),
        }[row]
        model = adapt.DiscrepancyAdapter(
            features, classifier, discrepancy=name, discrepancy_weight=weight
        )
    model.compile(keras.optimizers.Adam(LEARNING_RATE), metrics=["accuracy"])
    return model, features


def outcome(
    test_predictions,
    test_labels,
    validation_probabilities,
    validation,
    validation_features,
    source_features,
    target_features,
    epoch_seconds,
):
    """Target accuracy, label-free selection score, proxy A-distance and epoch time of a run."""
    probabilities = np.clip(
        validation_probabilities[np.arange(len(validation[1])), validation[1]], 1e-7, 1.0
    )
    return {
        "accuracy": float(np.mean(test_predictions == test_labels)),
        "selection_risk": adapt.importance_weighted_risk(
            -np.log(probabilities), validation_features, target_features
        ),
        "pad": adapt.proxy_a_distance(source_features, target_features),
        "epoch_seconds": statistics.median(epoch_seconds[1:]),
    }


def run_ours(row, domains, task, seed, epochs, lambda_max=1.0):
    source_name, target_name = TASKS[task]
    source, validation = domains[source_name]["train"], domains[source_name]["validation"]
    target_x, test = domains[target_name]["train"][0], domains[target_name]["test"]
    model, features = make_model(row, seed)
    timer = EpochTimer()
    if row == "source only":
        model.fit(*source, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[timer])
    else:
        pairs = kt.domain_pairs(source, target_x, batch_size=BATCH, seed=seed)
        schedule = adapt.DANNSchedule(lambda_max=lambda_max, schedule_learning_rate=False)
        model.fit(pairs, epochs=epochs, verbose=0, callbacks=[timer, schedule])
    predict = lambda x: model.predict(x, batch_size=1000, verbose=0)  # noqa: E731
    embed = lambda x: features.predict(x, batch_size=1000, verbose=0)  # noqa: E731
    return outcome(
        np.argmax(predict(test[0]), -1),
        test[1],
        keras.ops.convert_to_numpy(keras.ops.softmax(predict(validation[0]))),
        validation,
        embed(validation[0]),
        embed(source[0][:1000]),
        embed(target_x[:1000]),
        timer.seconds,
    )


def run_peer(domains, task, seed, epochs):
    """ADAPT's DANN (every lambda_max of the grid) and DeepCORAL, in a tf.keras subprocess."""
    source_name, target_name = TASKS[task]
    source, validation = domains[source_name]["train"], domains[source_name]["validation"]
    target_x, test = domains[target_name]["train"][0], domains[target_name]["test"]
    arrays = {
        "x_source": source[0],
        "y_source": source[1],
        "x_target": target_x,
        "x_validation": validation[0],
        "x_test": test[0],
    }
    for name, model in zip(("features", "classifier", "discriminator"), lenet(seed)):
        arrays.update({f"{name}_{i}": w for i, w in enumerate(model.get_weights())})
    arrays["settings"] = np.array(
        json.dumps(
            {
                "seed": seed,
                "epochs": epochs,
                "batch_size": BATCH,
                "learning_rate": LEARNING_RATE,
                "lambda_grid": list(LAMBDA_GRID),
                "coral_weight": 1.0,
            }
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        given, returned = os.path.join(folder, "in.npz"), os.path.join(folder, "out.npz")
        np.savez(given, **arrays)
        subprocess.run(
            [sys.executable, os.path.join(HERE, "adapt_peer.py"), given, returned],
            check=True,
            env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        out = dict(np.load(returned))
    runs = {}
    for key in {k.rsplit("|", 1)[0] for k in out}:
        method, value = key.split("|")
        get = lambda name: out[f"{key}|{name}"]  # noqa: E731
        runs[(method, float(value))] = outcome(
            get("test_predictions"),
            test[1],
            get("validation_probabilities"),
            validation,
            get("validation_features"),
            get("source_features"),
            get("target_features"),
            list(get("epoch_seconds")),
        )
    return runs


def chosen(grid):
    """The run with the lowest label-free selection risk, and its lambda_max."""
    value = min(grid, key=lambda v: grid[v]["selection_risk"])
    return {**grid[value], "lambda_max": value}


def record(results, task, row, run):
    entry = results.setdefault(task, {}).setdefault(row, {"runs": []})
    entry["runs"].append(run)
    extra = f", lambda_max {run['lambda_max']}" if "lambda_max" in run else ""
    print(
        f"  {task} {row}: {100 * run['accuracy']:.2f}% ({run['epoch_seconds']:.2f} s/epoch, "
        f"PAD {run['pad']:.2f}{extra})",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--no-peer", action="store_true", help="leave out the ADAPT rows")
    args = parser.parse_args()

    results, grids = {}, {}
    for seed in args.seeds:
        domains = load_domains(args.data, seed)
        for task in TASKS:
            for row in ("source only", "MMD (DAN)", "Deep CORAL", "CMD"):
                record(results, task, row, run_ours(row, domains, task, seed, args.epochs))
            grid = {
                value: run_ours("DANN", domains, task, seed, args.epochs, value)
                for value in LAMBDA_GRID
            }
            grids.setdefault(task, {}).setdefault("DANN", []).append(
                {str(k): v for k, v in grid.items()}
            )
            record(results, task, "DANN", chosen(grid))
            if not args.no_peer:
                peer = run_peer(domains, task, seed, args.epochs)
                grid = {value: run for (method, value), run in peer.items() if method == "DANN"}
                grids[task].setdefault("ADAPT DANN", []).append(
                    {str(k): v for k, v in grid.items()}
                )
                record(results, task, "ADAPT DANN", chosen(grid))
                record(results, task, "ADAPT DeepCORAL", peer[("DeepCORAL", 1.0)])

    header = [
        "task",
        "row",
        "target accuracy %",
        "epoch s",
        "proxy A-distance",
        "lambda_max chosen",
    ]
    rows = []
    for task, by_row in results.items():
        for row, entry in by_row.items():
            runs = entry["runs"]
            mean, std = mean_std([r["accuracy"] for r in runs])
            entry.update(
                accuracy_mean=mean,
                accuracy_std=std,
                epoch_seconds_median=statistics.median(r["epoch_seconds"] for r in runs),
                pad_mean=float(np.mean([r["pad"] for r in runs])),
            )
            lambdas = ", ".join(str(r["lambda_max"]) for r in runs if "lambda_max" in r)
            rows.append(
                [
                    task,
                    row,
                    f"{100 * mean:.2f} ± {100 * std:.2f}",
                    f"{entry['epoch_seconds_median']:.2f}",
                    f"{entry['pad_mean']:.2f}",
                    lambdas,
                ]
            )
    print_table(header, rows)
    for task, anchor in ANCHORS.items():
        ours = results[task]["DANN"]
        peers = (
            {"ADAPT DANN": 100 * results[task]["ADAPT DANN"]["accuracy_mean"]}
            if not args.no_peer
            else {}
        )
        bars = {**anchor, **peers}
        beaten = all(100 * ours["accuracy_mean"] > value for value in bars.values())
        faster = (
            args.no_peer
            or ours["epoch_seconds_median"] <= results[task]["ADAPT DANN"]["epoch_seconds_median"]
        )
        print(
            f"goal {task}: our DANN {100 * ours['accuracy_mean']:.2f}% vs {bars}: "
            f"{'met' if beaten else 'NOT met'}; seconds per epoch no more than ADAPT's: "
            f"{'met' if faster else 'NOT met'}"
        )
    path = write_json(
        "adapt_digits.json",
        {
            "benchmark": "adapt_digits",
            "seeds": args.seeds,
            "epochs": args.epochs,
            "batch_size": BATCH,
            "learning_rate": LEARNING_RATE,
            "lambda_grid": list(LAMBDA_GRID),
            "selection": (
                "lowest importance-weighted loss on 1,000 held-out labelled source images "
                "(no target labels)"
            ),
            "train": "2,000 MNIST (test set) + 1,800 USPS train, drawn per seed",
            "test": {
                "MNIST -> USPS": "USPS test (2,007)",
                "USPS -> MNIST": "the 8,000 MNIST images not drawn",
            },
            "peer": None if args.no_peer else "adapt 0.4.5 on tf_keras (TF_USE_LEGACY_KERAS=1)",
            "anchors_adda_paper": ANCHORS,
            "rows": results,
            "dann_grids": grids,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
