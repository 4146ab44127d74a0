"""Distillation on Fashion-MNIST: keras-transfer's Distiller beside keras.distillation.

    python examples/benchmarks/distill.py [--seeds 0 1 2] [--epochs 5] [--train-size 20000]

Teacher: a CNN of ~0.9M parameters; student: ~53K (17x fewer). Every row uses the
same teacher (per seed), the same student initialisation, Adam(1e-3), batch 128,
temperature 4 and alpha 0.1 (Keras: student_loss_weight=0.1). Training on a
stratified subset of the training split, testing on all 10,000 test images.
Epoch seconds are the median step time x steps per epoch (steps that trace left out).
Prints a table and writes results/distill.json.
"""

import argparse
import statistics

import keras
import numpy as np

import keras_transfer as kt
from fashion_common import StepTimer, accuracy, fashion_subset, mean_std, print_table, sparse_ce
from fashion_common import student_cnn, teacher_cnn, write_json

TEMPERATURE, ALPHA, BATCH, LEARNING_RATE = 4.0, 0.1, 128, 1e-3


def train(model, x, y, epochs, **fit_kwargs):
    timer = StepTimer()
    model.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[timer], **fit_kwargs)
    return timer


def ours(teacher, student, loss="kl", cache=False):
    distiller = kt.Distiller(teacher, student, temperature=TEMPERATURE, alpha=ALPHA,
                             distillation_loss=loss, cache_teacher=cache)
    distiller.compile(keras.optimizers.Adam(LEARNING_RATE))
    return distiller


def keras_distiller(teacher, student, strategy):
    distiller = keras.distillation.Distiller(
        teacher, student, distillation_losses=strategy, student_loss_weight=ALPHA
    )
    distiller.compile(keras.optimizers.Adam(LEARNING_RATE), loss=sparse_ce())
    return distiller


ROWS = {
    "student, kl (keras-transfer)": lambda t, s: ours(t, s, "kl"),
    "student, mse (keras-transfer)": lambda t, s: ours(t, s, "mse"),
    "student, kl, cached teacher (keras-transfer)": lambda t, s: ours(t, s, "kl", cache=True),
    "student, kl (keras.distillation, KLDivergence())": lambda t, s: keras_distiller(
        t, s, keras.distillation.LogitsDistillation(TEMPERATURE, loss=keras.losses.KLDivergence())),
    "student, keras.distillation default LogitsDistillation()": lambda t, s: keras_distiller(
        t, s, keras.distillation.LogitsDistillation(TEMPERATURE)),
}


def run_seed(seed, data, epochs):
    (x_train, y_train), (x_test, y_test) = data
    steps = -(-len(x_train) // BATCH)
    results = {}

    teacher = teacher_cnn(seed)
    teacher.compile(keras.optimizers.Adam(LEARNING_RATE), sparse_ce())
    timer = train(teacher, x_train, y_train, epochs)
    results["teacher"] = (accuracy(teacher, x_test, y_test), timer.epoch_seconds(steps))

    student = student_cnn(seed)
    student.compile(keras.optimizers.Adam(LEARNING_RATE), sparse_ce())
    timer = train(student, x_train, y_train, epochs)
    results["student from scratch"] = (accuracy(student, x_test, y_test), timer.epoch_seconds(steps))

    predict_timer = StepTimer()
    for _ in range(2):
        teacher.predict(x_train, batch_size=BATCH, verbose=0, callbacks=[predict_timer])
    results["teacher predict over the data"] = (None, predict_timer.epoch_seconds(steps))

    for name, make in ROWS.items():
        student = student_cnn(seed)
        distiller = make(teacher, student)
        timer = train(distiller, x_train, y_train, epochs)
        results[name] = (accuracy(student, x_test, y_test), timer.epoch_seconds(steps))
        print(f"  seed {seed}: {name}: accuracy {results[name][0]:.4f}, "
              f"epoch {results[name][1]:.2f} s", flush=True)
    return results, teacher.count_params(), student.count_params()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=20000)
    args = parser.parse_args()

    data = fashion_subset(args.train_size)
    per_seed = []
    for seed in args.seeds:
        results, teacher_params, student_params = run_seed(seed, data, args.epochs)
        per_seed.append(results)

    names = list(per_seed[0])
    summary = {}
    for name in names:
        accuracies = [r[name][0] for r in per_seed if r[name][0] is not None]
        seconds = statistics.median(r[name][1] for r in per_seed)
        summary[name] = {
            "accuracy_mean": mean_std(accuracies)[0] if accuracies else None,
            "accuracy_std": mean_std(accuracies)[1] if accuracies else None,
            "accuracies": accuracies,
            "epoch_seconds_median": seconds,
        }
    student_epoch = summary["student from scratch"]["epoch_seconds_median"]
    teacher_predict = summary["teacher predict over the data"]["epoch_seconds_median"]
    gap = summary["teacher"]["accuracy_mean"] - summary["student from scratch"]["accuracy_mean"]
    rows = []
    for name in names:
        entry = summary[name]
        entry["ratio_to_student_plus_teacher_predict"] = entry["epoch_seconds_median"] / (
            student_epoch + teacher_predict)
        entry["ratio_to_student_epoch"] = entry["epoch_seconds_median"] / student_epoch
        closed = None
        if entry["accuracy_mean"] is not None and name.startswith("student,") and gap > 0:
            closed = (entry["accuracy_mean"] - summary["student from scratch"]["accuracy_mean"]) / gap
        entry["gap_closed"] = closed
        rows.append([
            name,
            "" if entry["accuracy_mean"] is None else
            f"{100 * entry['accuracy_mean']:.2f} ± {100 * entry['accuracy_std']:.2f}",
            "" if closed is None else f"{100 * closed:.0f}%",
            f"{entry['epoch_seconds_median']:.2f}",
            f"{entry['ratio_to_student_plus_teacher_predict']:.2f}x",
            f"{entry['ratio_to_student_epoch']:.2f}x",
        ])
    print(f"\nFashion-MNIST, train {len(data[0][0])} images (stratified), test 10,000; "
          f"{args.epochs} epochs, seeds {args.seeds}; teacher {teacher_params:,} parameters, "
          f"student {student_params:,}")
    print_table(["row", "test accuracy %", "gap closed", "epoch s", "vs student+teacher predict",
                 "vs student epoch"], rows)
    path = write_json("distill.json", {
        "benchmark": "distill", "train_images": len(data[0][0]), "test_images": len(data[1][0]),
        "epochs": args.epochs, "seeds": args.seeds, "batch_size": BATCH,
        "temperature": TEMPERATURE, "alpha": ALPHA, "learning_rate": LEARNING_RATE,
        "teacher_parameters": teacher_params, "student_parameters": student_params,
        "rows": summary,
    })
    print(f"written: {path}")


if __name__ == "__main__":
    main()
