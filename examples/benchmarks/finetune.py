"""Transfer with few labels on Fashion-MNIST: scratch, features, fine-tuning, L2-SP, LoRA.

    python examples/benchmarks/finetune.py [--seeds 0 1 2] [--labels 10 50] [--steps 300]

Source: a CNN (~0.9M parameters) trained on classes 0-4, full training split
(30,000 images, 3 epochs, seed 0). Target: classes 5-9 with 10 or 50 labelled
images per class (drawn per seed); test on all 5,000 target test images. Every
row trains for the same number of optimizer steps (--steps, batch 32), Adam:
- from scratch: the source architecture, random init, 1e-3;
- feature extraction: a Dense head on cached features of the source cut after
  its conv blocks (t_flatten, 6,272 features), 1e-3;
- fine-tune: `fine_tune`, half the steps on the head (1e-3), half with the
  whole backbone unfrozen (1e-4);
- fine-tune + L2-SP: the same with sp_weight=0.1 towards the source weights;
- LoRA: rank-4 LoRA on the source's conv2 and conv3 plus a new head, 1e-3.
The cut: a two-seed probe at 10 labels/class gave 61-76% for a head on the
128-unit dense layer (too specific to the source classes) and 89-91% on the
conv features; every transfer row uses the conv features.
Timing: one epoch of head training over the 30,000 target training images, on
cached features vs through the frozen backbone, both with batch 32 and
steps_per_execution=16 (median epoch time of epochs 2-4, the first traces).
Prints a table and writes results/finetune.json.
"""

import argparse
import math
import statistics
import tempfile
import time

import keras
import numpy as np
from fashion_common import EpochTimer
from fashion_common import mean_std
from fashion_common import print_table
from fashion_common import sparse_ce
from fashion_common import teacher_cnn
from fashion_common import write_json

import keras_transfer as kt

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
BATCH, FEATURES = 32, "t_flatten"


def network(classes, seed):
    return teacher_cnn(seed, classes, name="source")


def split(x, y, classes):
    keep = np.isin(y, classes)
    return x[keep], np.searchsorted(classes, y[keep]).astype("int32")


def few_labels(x, y, per_class, seed):
    rng = np.random.default_rng(seed)
    index = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    )
    return x[index], y[index]


def head(width):
    return keras.Sequential([keras.Input((width,)), keras.layers.Dense(len(TARGET))], name="head")


def compiled(model, learning_rate):
    model.compile(keras.optimizers.Adam(learning_rate), sparse_ce(), metrics=["accuracy"])
    return model


def test_accuracy(model, test):
    return model.evaluate(test[0], test[1], batch_size=1000, verbose=0, return_dict=True)[
        "accuracy"
    ]


def epochs_for(steps, n):
    return max(1, math.ceil(steps / math.ceil(n / BATCH)))


def run_rows(source, train, test, steps, seed, cache_dir):
    x, y = train
    epochs = epochs_for(steps, len(x))
    half = max(1, epochs // 2)
    results = {}

    scratch = compiled(network(len(TARGET), seed), 1e-3)
    scratch.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0)
    results["from scratch"] = test_accuracy(scratch, test)

    keras.utils.set_random_seed(seed)
    backbone = kt.load_backbone(source, output_layer=FEATURES)
    features = kt.extract_features(backbone, x, cache_dir=cache_dir)
    top = compiled(head(features.shape[1]), 1e-3)
    top.fit(features, y, epochs=epochs, batch_size=BATCH, verbose=0)
    results["feature extraction (cached)"] = test_accuracy(
        compiled(kt.stack(backbone, top), 1e-3), test
    )

    for name, sp_weight in (("fine-tune (two-phase)", None), ("fine-tune + L2-SP", 0.1)):
        keras.utils.set_random_seed(seed)
        backbone = kt.load_backbone(source, output_layer=FEATURES)
        if sp_weight is not None:
            kt.l2_sp(backbone, backbone, sp_weight=sp_weight, l2_weight=0.0)
        model, _ = kt.fine_tune(
            backbone,
            keras.layers.Dense(len(TARGET)),
            (x, y),
            head_epochs=half,
            fine_tune_epochs=half,
            learning_rate=1e-3,
            fine_tune_learning_rate=1e-4,
            batch_size=BATCH,
            verbose=0,
        )
        results[name] = test_accuracy(model, test)

    keras.utils.set_random_seed(seed)
    backbone = kt.load_backbone(source, output_layer=FEATURES)
    kt.add_lora(backbone, rank=4, layers=["t_conv2", "t_conv3"])
    model = compiled(kt.stack(backbone, head(features.shape[1])), 1e-3)
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0)
    results["LoRA (rank 4)"] = test_accuracy(model, test)
    return results


def epoch_seconds(model, x, y, epochs=4):
    model.compile(keras.optimizers.Adam(1e-3), sparse_ce(), steps_per_execution=16)
    timer = EpochTimer()
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[timer])
    return statistics.median(timer.seconds[1:])


def head_epoch_timing(source, x, y):
    """Seconds per epoch of head training: cached features vs through the frozen backbone."""
    backbone = kt.load_backbone(source, output_layer=FEATURES)
    start = time.perf_counter()
    features = kt.extract_features(backbone, x)
    extract_seconds = time.perf_counter() - start
    cached = epoch_seconds(head(features.shape[1]), features, y)
    through = epoch_seconds(kt.stack(backbone, head(features.shape[1])), x, y)
    return {
        "images": int(len(x)),
        "feature_extraction_seconds": extract_seconds,
        "cached_epoch_seconds": cached,
        "frozen_backbone_epoch_seconds": through,
        "speedup": through / cached,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--source-epochs", type=int, default=3)
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = kt.load_fashion_mnist()
    source_train = split(x_train, y_train, np.array(SOURCE))
    target_pool = split(x_train, y_train, np.array(TARGET))
    target_test = split(x_test, y_test, np.array(TARGET))

    source = compiled(network(len(SOURCE), 0), 1e-3)
    source.fit(*source_train, epochs=args.source_epochs, batch_size=128, verbose=0)
    source_test = split(x_test, y_test, np.array(SOURCE))
    source_accuracy = test_accuracy(source, source_test)
    print(
        f"source model: {source.count_params():,} parameters, "
        f"{100 * source_accuracy:.2f}% on classes 0-4"
    )

    accuracies = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for per_class in args.labels:
            for seed in args.seeds:
                train = few_labels(*target_pool, per_class, seed)
                for name, value in run_rows(
                    source, train, target_test, args.steps, seed, cache_dir
                ).items():
                    accuracies.setdefault(name, {}).setdefault(per_class, []).append(value)
                print(f"  {per_class} labels/class, seed {seed}: done")
    timing = head_epoch_timing(source, *target_pool)

    header = ["row"] + [f"{n} labels/class: accuracy %" for n in args.labels]
    rows, table = [], {}
    for name, by_labels in accuracies.items():
        cells = [name]
        for per_class in args.labels:
            mean, std = mean_std(by_labels[per_class])
            table.setdefault(name, {})[str(per_class)] = {
                "mean": mean,
                "std": std,
                "runs": by_labels[per_class],
            }
            cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}")
        rows.append(cells)
    print_table(header, rows)
    print(
        f"head epoch over {timing['images']:,} images: "
        f"cached features {timing['cached_epoch_seconds']:.3f} s, "
        f"through the frozen backbone {timing['frozen_backbone_epoch_seconds']:.3f} s "
        f"({timing['speedup']:.1f}x; goal >= 10x); "
        f"one-time extraction {timing['feature_extraction_seconds']:.2f} s"
    )
    scratch = {n: table["from scratch"][str(n)]["mean"] for n in args.labels}
    best_transfer = max(
        (v[str(min(args.labels))]["mean"], k) for k, v in table.items() if k != "from scratch"
    )
    met = best_transfer[0] > scratch[min(args.labels)]
    print(
        f"goal transfer beats scratch at {min(args.labels)} labels/class: "
        f"{'met' if met else 'NOT met'} ({best_transfer[1]} {100 * best_transfer[0]:.2f}% "
        f"vs {100 * scratch[min(args.labels)]:.2f}%)"
    )
    path = write_json(
        "finetune.json",
        {
            "benchmark": "finetune",
            "seeds": args.seeds,
            "labels_per_class": args.labels,
            "steps": args.steps,
            "batch_size": BATCH,
            "source_epochs": args.source_epochs,
            "source_parameters": source.count_params(),
            "source_test_accuracy": source_accuracy,
            "rows": table,
            "head_epoch_timing": timing,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
