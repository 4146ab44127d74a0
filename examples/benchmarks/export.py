"""Export of the distilled Fashion-MNIST student: accuracy, agreement, size and latency.

    python examples/benchmarks/export.py [--epochs 6] [--train-size 20000] [--repeats 3]

The student is distilled from the teacher exactly as in distill.py (seed 0, kl,
T=4, alpha=0.1). Rows: the Keras float32 model, TFLite float32, float16, dynamic
range, int8 post-training (calibrated on 200 training images, int8 input and
output) and int8 quantization-aware (one epoch of QAT fine-tuning from the
distilled student at learning rate 1e-4, activation ranges
calibrated on 500 training images). Accuracy and top-1 agreement with the
Keras model on all 10,000 test images; latency is the median over --repeats
runs of the median of 500 single-image, single-thread invoke() calls in the
LiteRT interpreter, with its default XNNPACK delegate (as an app gets it) and
with the builtin kernels alone. Prints a table and writes results/export.json.
"""

import argparse
import os
import statistics
import tempfile

import keras
import numpy as np
from fashion_common import fashion_subset
from fashion_common import print_table
from fashion_common import sparse_ce
from fashion_common import student_cnn
from fashion_common import teacher_cnn
from fashion_common import write_json

import keras_transfer as kt

BATCH = 128


def distilled_student(data, epochs, seed=0):
    (x_train, y_train), _ = data
    teacher = teacher_cnn(seed)
    teacher.compile(keras.optimizers.Adam(1e-3), sparse_ce())
    teacher.fit(x_train, y_train, epochs=epochs, batch_size=BATCH, verbose=0)
    student = student_cnn(seed)
    distiller = kt.Distiller(teacher, student, temperature=4.0, alpha=0.1)
    distiller.compile(keras.optimizers.Adam(1e-3))
    distiller.fit(x_train, y_train, epochs=epochs, batch_size=BATCH, verbose=0)
    return student


def quantization_aware(student, data):
    import tf_keras

    (x_train, y_train), _ = data
    qat = kt.quantize_aware(student, calibration_data=x_train[:500])
    qat.compile(
        tf_keras.optimizers.Adam(1e-4),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = qat.fit(x_train, y_train, epochs=1, batch_size=BATCH, verbose=0)
    return qat, history.history["loss"]


def latency_ms(path, repeats, default_delegates=True):
    return statistics.median(
        kt.benchmark_tflite(
            path, threads=1, runs=500, warmup=50, default_delegates=default_delegates
        ).median_ms
        for _ in range(repeats)
    )


def keras_latency_ms(model, example, repeats):
    """Single-image latency of the Keras model called directly (no predict() overhead)."""
    import time

    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False))
    x = tf.constant(example[None])
    for _ in range(50):
        call(x)
    medians = []
    for _ in range(repeats):
        times = []
        for _ in range(500):
            start = time.perf_counter()
            call(x).numpy()
            times.append((time.perf_counter() - start) * 1000)
        medians.append(statistics.median(times))
    return statistics.median(medians)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = fashion_subset(args.train_size)
    (x_train, _), (x_test, y_test) = data
    student = distilled_student(data, args.epochs)
    qat, qat_losses = quantization_aware(student, data)
    reference = student.predict(x_test, batch_size=1000, verbose=0)
    keras_accuracy = float(np.mean(reference.argmax(-1) == y_test))

    rows = {
        "Keras float32": {
            "accuracy": keras_accuracy,
            "agreement": 1.0,
            "bytes": None,
            "latency_ms": keras_latency_ms(student, x_test[0], args.repeats),
        }
    }
    with tempfile.TemporaryDirectory() as folder:
        keras_path = os.path.join(folder, "student.keras")
        student.save(keras_path)
        rows["Keras float32"]["bytes"] = os.path.getsize(keras_path)
        exports = {
            "TFLite float32": lambda p: kt.export_tflite(student, p),
            "TFLite float16": lambda p: kt.export_tflite(student, p, "float16"),
            "TFLite dynamic range": lambda p: kt.export_tflite(student, p, "dynamic"),
            "TFLite int8 post-training": lambda p: kt.export_tflite(
                student, p, "int8", representative_data=x_train
            ),
            "TFLite int8 QAT": lambda p: kt.export_tflite(qat, p, "int8"),
        }
        for name, export in exports.items():
            report = export(os.path.join(folder, name.replace(" ", "_") + ".tflite"))
            parity = kt.compare(report.path, student, (x_test, y_test))
            rows[name] = {
                "accuracy": parity.tflite_accuracy,
                "agreement": parity.agreement,
                "max_abs_diff": parity.max_abs_diff,
                "bytes": report.size_bytes,
                "latency_ms": latency_ms(report.path, args.repeats),
                "latency_builtin_kernels_ms": latency_ms(report.path, args.repeats, False),
                "input_dtype": report.input_dtype,
            }
            print(f"  {name}: {report}", flush=True)

    float_row = rows["TFLite float32"]
    table = []
    for name, row in rows.items():
        row["accuracy_minus_keras_points"] = 100 * (row["accuracy"] - keras_accuracy)
        row["size_vs_tflite_float32"] = row["bytes"] / float_row["bytes"]
        row["latency_vs_tflite_float32"] = row["latency_ms"] / float_row["latency_ms"]
        if "latency_builtin_kernels_ms" in row:
            row["builtin_latency_vs_tflite_float32"] = (
                row["latency_builtin_kernels_ms"] / float_row["latency_builtin_kernels_ms"]
            )
        table.append(
            [
                name,
                f"{100 * row['accuracy']:.2f}",
                f"{row['accuracy_minus_keras_points']:+.2f}",
                f"{row['agreement']:.4f}",
                f"{row['bytes'] / 1024:.1f} KiB",
                f"{row['size_vs_tflite_float32']:.2f}x",
                f"{row['latency_ms']:.4f}",
                f"{row['latency_vs_tflite_float32']:.2f}x",
                f"{row['latency_builtin_kernels_ms']:.4f}"
                if "latency_builtin_kernels_ms" in row
                else "",
                f"{row['builtin_latency_vs_tflite_float32']:.2f}x"
                if "latency_builtin_kernels_ms" in row
                else "",
            ]
        )
    print(
        f"\nDistilled Fashion-MNIST student ({student.count_params():,} parameters), "
        f"test 10,000 images; QAT loss {qat_losses[0]:.4f} after 1 epoch"
    )
    print_table(
        [
            "model",
            "accuracy %",
            "vs Keras (points)",
            "agreement",
            "file",
            "size vs f32",
            "latency ms",
            "latency vs f32",
            "builtin-kernel ms",
            "builtin vs f32",
        ],
        table,
    )
    # Accuracy goals bound what quantization loses; QAT trains one more epoch and may gain.
    goals = {
        "int8 PTQ loses at most 0.5 points": rows["TFLite int8 post-training"][
            "accuracy_minus_keras_points"
        ]
        >= -0.5,
        "int8 QAT loses at most 0.2 points": rows["TFLite int8 QAT"]["accuracy_minus_keras_points"]
        >= -0.2,
        "int8 file <= 0.27x float32": rows["TFLite int8 post-training"]["size_vs_tflite_float32"]
        <= 0.27,
        "int8 latency <= 0.5x float32": rows["TFLite int8 post-training"][
            "latency_vs_tflite_float32"
        ]
        <= 0.5,
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")
    path = write_json(
        "export.json",
        {
            "benchmark": "export",
            "train_images": len(x_train),
            "test_images": len(x_test),
            "epochs": args.epochs,
            "repeats": args.repeats,
            "student_parameters": student.count_params(),
            "qat_epoch_loss": qat_losses,
            "rows": rows,
            "goals": goals,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
