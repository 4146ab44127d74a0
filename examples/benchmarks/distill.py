"""Distillation on Fashion-MNIST: keras-transfer's Distiller beside keras.distillation.

    python examples/benchmarks/distill.py [--seeds 0 1 2] [--epochs 6] [--train-size 20000]

Teacher: a CNN of ~0.9M parameters; student: ~53K (17x fewer). Every row uses the
same teacher (per seed), the same student initialisation, Adam(1e-3), batch 128,
temperature 4 and alpha 0.1 (Keras: student_loss_weight=0.1), and the same
shuffling (the seed is reset before each fit). Training on a stratified subset of
the training split, testing on all 10,000 test images, clean and under uneven
light (the target domain: a brightness ramp of random strength).

Rows beyond the plain ones, each for what keras.distillation does not offer or
does another way:
- cached teacher outputs (the teacher runs once);
- int8: the cached-teacher student quantized after training, and fine-tuned
  2 epochs quantization-aware from the cached teacher logits
  (`distill_quantize_aware`, Adam 1e-4), both measured as .tflite files;
- a SavedModel teacher (ours: the folder's path; Keras: a TFSMLayer model);
- unlabelled target-domain images only (alpha=0 / student_loss_weight=0);
- MirroredStrategy on two logical CPUs: the same run, compared with the
  single-device row by the largest difference in test logits.
Epoch seconds are the median step time x steps per epoch (steps that trace left out).
Prints a table and writes results/distill.json.
"""

import os

import tensorflow as tf

# Two logical CPUs for the MirroredStrategy rows; must happen before TensorFlow starts.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from fashion_common import StepTimer  # noqa: E402
from fashion_common import fashion_subset  # noqa: E402
from fashion_common import fashion_unlabelled_pool  # noqa: E402
from fashion_common import legacy_step_timer  # noqa: E402
from fashion_common import mean_std  # noqa: E402
from fashion_common import print_table  # noqa: E402
from fashion_common import sparse_ce  # noqa: E402
from fashion_common import student_cnn  # noqa: E402
from fashion_common import teacher_cnn  # noqa: E402
from fashion_common import write_json  # noqa: E402

import keras_transfer as kt  # noqa: E402
from keras_transfer.datasets import uneven_light  # noqa: E402

TEMPERATURE, ALPHA, BATCH, LEARNING_RATE = 4.0, 0.1, 128, 1e-3
QAT_EPOCHS, QAT_LEARNING_RATE = 2, 1e-4
ONE_DEVICE = {  # strategy row -> the single-device row it must reproduce
    "student, kl, MirroredStrategy 2 CPUs (keras-transfer)": "student, kl (keras-transfer)",
    "student, kl, MirroredStrategy 2 CPUs (keras.distillation)": (
        "student, kl (keras.distillation, KLDivergence())"
    ),
}


def keras_kl():
    return keras.distillation.LogitsDistillation(TEMPERATURE, loss=keras.losses.KLDivergence())


def ours(teacher, student, loss="kl", cache=False, alpha=ALPHA):
    distiller = kt.Distiller(
        teacher,
        student,
        temperature=TEMPERATURE,
        alpha=alpha,
        distillation_loss=loss,
        cache_teacher=cache,
    )
    distiller.compile(keras.optimizers.Adam(LEARNING_RATE))
    return distiller


def keras_distiller(teacher, student, strategy, alpha=ALPHA):
    distiller = keras.distillation.Distiller(
        teacher, student, distillation_losses=strategy, student_loss_weight=alpha
    )
    distiller.compile(keras.optimizers.Adam(LEARNING_RATE), loss=sparse_ce())
    return distiller


def tfsm_teacher(folder):
    """How a keras.distillation user serves a SavedModel teacher: a TFSMLayer in a Model."""
    inputs = keras.Input((28, 28, 1))
    return keras.Model(inputs, keras.layers.TFSMLayer(folder, call_endpoint="serve")(inputs))


class Run:
    """One seed's data, teacher and the models each row leaves behind."""

    def __init__(self, seed, data, target_x, epochs, folder):
        (self.x, self.y), _ = data
        self.seed, self.target_x, self.epochs, self.folder = seed, target_x, epochs, folder
        self.students = {}
        self.steps = -(-len(self.x) // BATCH)

    def fit(self, model, x, y=None, epochs=None, timer=None):
        timer = timer or StepTimer()
        keras.utils.set_random_seed(100 + self.seed)  # the same shuffling in every row
        model.fit(
            x, y, epochs=epochs or self.epochs, batch_size=BATCH, verbose=0, callbacks=[timer]
        )
        return timer.epoch_seconds(self.steps)

    def distil(self, make, x=None, y="labels", strategy=None):
        """Trains a fresh student through `make(teacher, student)`; returns (student, epoch s)."""
        x = self.x if x is None else x
        y = self.y if isinstance(y, str) else y
        with (strategy or tf.distribute.get_strategy()).scope():
            student = student_cnn(self.seed)
            distiller = make(self.teacher, student)
        return student, self.fit(distiller, x, y)


def keras_rows(run):
    """Rows whose model is a Keras 3 student; each returns (student, epoch seconds)."""
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    return {
        "student, kl (keras-transfer)": lambda: run.distil(lambda t, s: ours(t, s, "kl")),
        "student, mse (keras-transfer)": lambda: run.distil(lambda t, s: ours(t, s, "mse")),
        "student, kl, cached teacher (keras-transfer)": lambda: run.distil(
            lambda t, s: ours(t, s, cache=True)
        ),
        "student, kl (keras.distillation, KLDivergence())": lambda: run.distil(
            lambda t, s: keras_distiller(t, s, keras_kl())
        ),
        "student, keras.distillation default LogitsDistillation()": lambda: run.distil(
            lambda t, s: keras_distiller(t, s, keras.distillation.LogitsDistillation(TEMPERATURE))
        ),
        "student, kl, SavedModel teacher (keras-transfer)": lambda: run.distil(
            lambda t, s: ours(run.saved_model, s)
        ),
        "student, kl, SavedModel teacher via TFSMLayer (keras.distillation)": lambda: run.distil(
            lambda t, s: keras_distiller(tfsm_teacher(run.saved_model), s, keras_kl())
        ),
        "student, kl, unlabelled target images (keras-transfer)": lambda: run.distil(
            lambda t, s: ours(t, s, alpha=0.0), x=run.target_x, y=None
        ),
        "student, kl, unlabelled target images (keras.distillation)": lambda: run.distil(
            lambda t, s: keras_distiller(t, s, keras_kl(), alpha=0.0), x=run.target_x, y=None
        ),
        "student, kl, MirroredStrategy 2 CPUs (keras-transfer)": lambda: run.distil(
            lambda t, s: ours(t, s, "kl"), strategy=mirrored
        ),
        "student, kl, MirroredStrategy 2 CPUs (keras.distillation)": lambda: run.distil(
            lambda t, s: keras_distiller(t, s, keras_kl()), strategy=mirrored
        ),
    }


def int8_rows(run, float_student):
    """The cached-teacher student as int8 files: post-training, and after distilled QAT."""
    import tf_keras

    post_training = kt.export_tflite(
        float_student,
        os.path.join(run.folder, f"ptq_{run.seed}.tflite"),
        quantization="int8",
        representative_data=run.x[:200],
    )
    timer = legacy_step_timer()
    keras.utils.set_random_seed(100 + run.seed)
    qat = kt.distill_quantize_aware(
        run.teacher,
        float_student,
        run.x,
        run.y,
        temperature=TEMPERATURE,
        alpha=ALPHA,
        calibration_data=run.x[:500],
        optimizer=tf_keras.optimizers.Adam(QAT_LEARNING_RATE),
        epochs=QAT_EPOCHS,
        batch_size=BATCH,
        verbose=0,
        callbacks=[timer],
    )
    qat_file = kt.export_tflite(
        qat, os.path.join(run.folder, f"qat_{run.seed}.tflite"), quantization="int8"
    )
    return {
        "cached-teacher student, int8 post-training (.tflite)": (post_training.path, None),
        f"cached-teacher student + {QAT_EPOCHS} epochs int8 QAT from cached teacher logits "
        "(.tflite)": (
            qat_file.path,
            timer.epoch_seconds(run.steps),
        ),
    }


def predict_logits(model_or_file, x):
    if isinstance(model_or_file, str):
        return kt.tflite_predict(model_or_file, x, batch_size=1000)
    return model_or_file.predict(x, batch_size=1000, verbose=0)


def run_seed(seed, data, target_x, shifted_test, epochs, folder):
    (x_test, y_test) = data[1]
    run = Run(seed, data, target_x, epochs, folder)
    results, logits = {}, {}

    def record(name, model, seconds):
        clean = predict_logits(model, x_test)
        shifted = predict_logits(model, shifted_test)
        logits[name] = clean
        results[name] = {
            "accuracy": float(np.mean(clean.argmax(-1) == y_test)),
            "shifted_accuracy": float(np.mean(shifted.argmax(-1) == y_test)),
            "epoch_seconds": seconds,
        }
        print(
            f"  seed {seed}: {name}: accuracy {results[name]['accuracy']:.4f}, shifted "
            f"{results[name]['shifted_accuracy']:.4f}, epoch {seconds or 0:.2f} s",
            flush=True,
        )

    run.teacher = teacher_cnn(seed)
    run.teacher.compile(keras.optimizers.Adam(LEARNING_RATE), sparse_ce())
    record("teacher", run.teacher, run.fit(run.teacher, run.x, run.y))
    run.saved_model = os.path.join(folder, f"teacher_{seed}")
    kt.export_saved_model(run.teacher, run.saved_model)

    scratch = student_cnn(seed)
    scratch.compile(keras.optimizers.Adam(LEARNING_RATE), sparse_ce())
    record("student from scratch", scratch, run.fit(scratch, run.x, run.y))

    predict_timer = StepTimer()
    for _ in range(2):
        run.teacher.predict(run.x, batch_size=BATCH, verbose=0, callbacks=[predict_timer])
    results["teacher predict over the data"] = {
        "accuracy": None,
        "shifted_accuracy": None,
        "epoch_seconds": predict_timer.epoch_seconds(run.steps),
    }

    for name, train in keras_rows(run).items():
        student, seconds = train()
        record(name, student, seconds)
        run.students[name] = student
    for name, (path, seconds) in int8_rows(
        run, run.students["student, kl, cached teacher (keras-transfer)"]
    ).items():
        record(name, path, seconds)
    for name, reference in ONE_DEVICE.items():
        results[name]["max_logit_diff_vs_one_device"] = float(
            np.max(np.abs(logits[name] - logits[reference]))
        )
    return results, run.teacher.count_params(), scratch.count_params()


def summarise(per_seed):
    summary = {}
    for name in per_seed[0]:
        entry = {}
        for key in ("accuracy", "shifted_accuracy"):
            values = [r[name][key] for r in per_seed if r[name][key] is not None]
            entry[f"{key}_mean"], entry[f"{key}_std"] = mean_std(values) if values else (None, None)
            entry[f"{key.replace('accuracy', 'accuracies')}"] = values
        seconds = [
            r[name]["epoch_seconds"] for r in per_seed if r[name]["epoch_seconds"] is not None
        ]
        entry["epoch_seconds_median"] = statistics.median(seconds) if seconds else None
        if "max_logit_diff_vs_one_device" in per_seed[0][name]:
            entry["max_logit_diff_vs_one_device"] = max(
                r[name]["max_logit_diff_vs_one_device"] for r in per_seed
            )
        summary[name] = entry
    student_epoch = summary["student from scratch"]["epoch_seconds_median"]
    teacher_predict = summary["teacher predict over the data"]["epoch_seconds_median"]
    scratch = summary["student from scratch"]["accuracy_mean"]
    gap = summary["teacher"]["accuracy_mean"] - scratch
    for name, entry in summary.items():
        seconds = entry["epoch_seconds_median"]
        entry["ratio_to_student_plus_teacher_predict"] = (
            None if seconds is None else seconds / (student_epoch + teacher_predict)
        )
        entry["ratio_to_student_epoch"] = None if seconds is None else seconds / student_epoch
        entry["gap_closed"] = (
            (entry["accuracy_mean"] - scratch) / gap
            if (name.startswith(("student,", "cached-teacher")) and gap > 0)
            else None
        )
    return summary


def table_rows(summary):
    def percent(entry, key):
        mean = entry[f"{key}_mean"]
        return "" if mean is None else f"{100 * mean:.2f} ± {100 * entry[f'{key}_std']:.2f}"

    def ratio(value):
        return "" if value is None else f"{value:.2f}x"

    rows = []
    for name, entry in summary.items():
        diff = entry.get("max_logit_diff_vs_one_device")
        rows.append(
            [
                name,
                percent(entry, "accuracy"),
                percent(entry, "shifted_accuracy"),
                "" if entry["gap_closed"] is None else f"{100 * entry['gap_closed']:.0f}%",
                ""
                if entry["epoch_seconds_median"] is None
                else f"{entry['epoch_seconds_median']:.2f}",
                ratio(entry["ratio_to_student_plus_teacher_predict"]),
                ratio(entry["ratio_to_student_epoch"]),
                "" if diff is None else f"{diff:.1e}",
            ]
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=20000)
    args = parser.parse_args()

    data = fashion_subset(args.train_size)
    target_x = uneven_light(fashion_unlabelled_pool(args.train_size, args.train_size), seed=6)
    shifted_test = uneven_light(data[1][0], seed=7)
    per_seed = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            results, teacher_params, student_params = run_seed(
                seed, data, target_x, shifted_test, args.epochs, folder
            )
            per_seed.append(results)

    summary = summarise(per_seed)
    print(
        f"\nFashion-MNIST, train {len(data[0][0])} images (stratified), test 10,000 clean and "
        f"under uneven light; {args.epochs} epochs, seeds {args.seeds}; teacher {teacher_params:,} "
        f"parameters, student {student_params:,}"
    )
    print_table(
        [
            "row",
            "test accuracy %",
            "uneven-light test %",
            "gap closed",
            "epoch s",
            "vs student+teacher predict",
            "vs student epoch",
            "max |Δ logit| vs one device",
        ],
        table_rows(summary),
    )
    path = write_json(
        "distill.json",
        {
            "benchmark": "distill",
            "train_images": len(data[0][0]),
            "target_images": len(target_x),
            "test_images": len(data[1][0]),
            "epochs": args.epochs,
            "seeds": args.seeds,
            "batch_size": BATCH,
            "temperature": TEMPERATURE,
            "alpha": ALPHA,
            "learning_rate": LEARNING_RATE,
            "qat_epochs": QAT_EPOCHS,
            "qat_learning_rate": QAT_LEARNING_RATE,
            "teacher_parameters": teacher_params,
            "student_parameters": student_params,
            "rows": summary,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
