"""Pick a backbone before fine-tuning: do LogME and LEEP rank candidates as fine-tuning does?

    python examples/benchmarks/rank_backbones.py [--seeds 0 1 2] [--data ../shared/data]

Target task: Fashion-MNIST classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle
boot) with 100 labelled training images per class; tested on the 5,000 test
images of those classes. Six candidate backbones, one small CNN architecture
(`fashion_common.student_cnn`, features = its 64-unit dense layer), pretrained
differently:
- random: no training;
- fashion 0-4, 250 images (1 epoch), 2,500 images (2 epochs), 15,000 images
  (4 epochs): the same source task with more or less data;
- MNIST digits: 10,000 MNIST test-set images from shared/data (3 epochs);
- fashion 0-9, 15,000 images (4 epochs): a source that saw other images of
  the target classes.
Each candidate's score is computed from the 500 labelled target images only:
LogME of its features, LEEP of its source head's softmax. Its actual
transfer: `kt.fine_tune` (new head 5 epochs on frozen features, then all
layers at 1e-4 for 5 epochs), target test accuracy, mean of the seeds.
Kendall's tau between each score and the accuracy says how well it ranks.
Writes results/rank_backbones.json.
"""

import argparse
import os
import time

import keras
import numpy as np
from fashion_common import print_table
from fashion_common import sparse_ce
from fashion_common import student_cnn
from fashion_common import write_json
from scipy.stats import kendalltau

import keras_transfer as kt

LABELS_PER_CLASS = 100
DEFAULT_DATA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data"
)


def pretrain(name, source, epochs, seed):
    model = student_cnn(seed)
    if source is not None:
        x, y = source
        model.compile(keras.optimizers.Adam(1e-3), sparse_ce())
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return name, model


def candidates(fashion, mnist_dir, seed):
    (x, y), _ = fashion
    rng = np.random.default_rng(seed)
    source = np.flatnonzero(y < 5)
    pick = {n: rng.choice(source, n, replace=False) for n in (250, 2500, 15000)}
    everything = rng.choice(len(y), 15000, replace=False)
    x_mnist, y_mnist = kt.load_mnist(mnist_dir, split="test")
    yield pretrain("random", None, 0, seed)
    for n, epochs in ((250, 1), (2500, 2), (15000, 4)):
        yield pretrain(f"fashion 0-4, {n:,} images", (x[pick[n]], y[pick[n]]), epochs, seed)
    yield pretrain("MNIST digits", (x_mnist, y_mnist), 3, seed)
    yield pretrain("fashion 0-9, 15,000 images", (x[everything], y[everything]), 4, seed)


def target_task(fashion, seed):
    (x, y), (x_test, y_test) = fashion
    rng = np.random.default_rng(seed + 100)
    train = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), LABELS_PER_CLASS, replace=False) for c in range(5, 10)]
    )
    test = y_test >= 5
    return (x[train], y[train] - 5), (x_test[test], y_test[test] - 5)


def features_of(model):
    return keras.Model(model.inputs, model.get_layer("s_dense").output, name="backbone")


def fine_tuned_accuracy(model, train, test, seeds):
    accuracies = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        backbone = keras.models.clone_model(features_of(model))
        backbone.set_weights(features_of(model).get_weights())
        tuned, _ = kt.fine_tune(
            backbone,
            keras.layers.Dense(5),
            train,
            head_epochs=5,
            fine_tune_epochs=5,
            learning_rate=1e-3,
            fine_tune_learning_rate=1e-4,
            verbose=0,
        )
        accuracies.append(
            float(np.mean(np.argmax(tuned.predict(test[0], verbose=0), -1) == test[1]))
        )
    return float(np.mean(accuracies)), accuracies


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    fashion = kt.load_fashion_mnist()
    train, test = target_task(fashion, args.seeds[0])
    rows = []
    for name, model in candidates(fashion, os.path.join(args.data, "mnist"), args.seeds[0]):
        started = time.perf_counter()
        features = features_of(model).predict(train[0], verbose=0)
        probabilities = keras.ops.convert_to_numpy(
            keras.ops.softmax(model.predict(train[0], verbose=0))
        )
        scores = {"logme": kt.logme(features, train[1]), "leep": kt.leep(probabilities, train[1])}
        scoring_seconds = time.perf_counter() - started
        accuracy, accuracies = fine_tuned_accuracy(model, train, test, args.seeds)
        rows.append(
            {
                "backbone": name,
                **scores,
                "scoring_seconds": scoring_seconds,
                "fine_tuned_accuracy": accuracy,
                "fine_tuned_accuracies": accuracies,
            }
        )
        print(
            f"  {name}: LogME {scores['logme']:.3f}, LEEP {scores['leep']:.3f}, "
            f"fine-tuned {100 * accuracy:.2f}%"
        )
    accuracy = [r["fine_tuned_accuracy"] for r in rows]
    taus = {
        score: float(kendalltau([r[score] for r in rows], accuracy).statistic)
        for score in ("logme", "leep")
    }

    def rank(key):
        return {r["backbone"]: i + 1 for i, r in enumerate(sorted(rows, key=lambda r: -r[key]))}

    ranks = {key: rank(key) for key in ("logme", "leep", "fine_tuned_accuracy")}
    print_table(
        ["backbone", "LogME", "LEEP", "fine-tuned accuracy %", "rank by LogME / LEEP / accuracy"],
        [
            [
                r["backbone"],
                f"{r['logme']:.3f}",
                f"{r['leep']:.3f}",
                f"{100 * r['fine_tuned_accuracy']:.2f}",
                " / ".join(
                    str(ranks[k][r["backbone"]]) for k in ("logme", "leep", "fine_tuned_accuracy")
                ),
            ]
            for r in rows
        ],
    )
    print(
        f"Kendall tau with fine-tuned accuracy: LogME {taus['logme']:.2f}, LEEP {taus['leep']:.2f} "
        f"(1 = same ranking; scoring a candidate takes "
        f"{np.median([r['scoring_seconds'] for r in rows]):.2f} s, "
        "fine-tuning it three times much longer)"
    )
    path = write_json(
        "rank_backbones.json",
        {
            "benchmark": "rank_backbones",
            "seeds": args.seeds,
            "labels_per_class": LABELS_PER_CLASS,
            "target": (
                "Fashion-MNIST 5-9, 100 labelled train images per class; "
                "test: the 5,000 test images of 5-9"
            ),
            "rows": rows,
            "kendall_tau": taus,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
