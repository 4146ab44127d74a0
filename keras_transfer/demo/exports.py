"""The demo's export stages: SavedModel, TFLite float32 and int8, int8 after quantization-aware
training.
"""

import os
import time

import numpy as np
import tensorflow as tf

from keras_transfer import export
from keras_transfer.demo.report import accuracy
from keras_transfer.demo.report import agreement
from keras_transfer.demo.settings import StageResult
from keras_transfer.evaluation import classification_report
from keras_transfer.evaluation import plot_confusion_matrix

STUDENT = "distilled student"


def export_quantize_aware_stage(student, teacher, task, out_dir, settings):
    """Quantization-aware fine-tuning on the teacher's labels, then int8 TFLite.

    Agreement is measured against the quantization-aware model the file was
    converted from: fine-tuning makes it a model of its own.
    """
    import tf_keras

    from keras_transfer.quantize import quantize_aware

    start = time.perf_counter()
    pseudo_labels = np.argmax(teacher.predict(task.target_unlabelled, verbose=0), axis=-1)
    qat = quantize_aware(student, calibration_data=task.target_unlabelled[:500])
    qat.compile(
        tf_keras.optimizers.Adam(1e-4),
        tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    qat.fit(
        task.target_unlabelled,
        pseudo_labels,
        epochs=settings.qat_epochs,
        batch_size=settings.batch_size,
        verbose=settings.verbose,
    )
    report = export.export_tflite(qat, os.path.join(out_dir, "student_int8_qat.tflite"), "int8")
    parity = export.compare(report.path, qat, task.target_test)
    return report, StageResult(
        stage="TFLite int8 QAT",
        evaluated_on="target test",
        accuracy=parity.tflite_accuracy,
        baseline="TFLite int8",
        claim="at least",
        file_bytes=report.size_bytes,
        agreement=parity.agreement,
        seconds=time.perf_counter() - start,
    )


def plot_deployed_confusion(task, tflite_path, out_dir):
    """The confusion matrix of the int8 file on the target test images, as a PNG."""
    x, y = task.target_test
    report = classification_report(
        export.tflite_predict(tflite_path, x), y, class_names=[str(c) for c in task.classes]
    )
    return plot_confusion_matrix(report, os.path.join(out_dir, "confusion_int8.png"))


def export_saved_model_stage(model, task, out_dir):
    """A serving SavedModel, reloaded with TensorFlow and checked against Keras."""
    start = time.perf_counter()
    report = export.export_saved_model(model, os.path.join(out_dir, "saved_model"))
    served = tf.saved_model.load(report.path)
    x, y = task.target_test
    outputs = served.serve(tf.constant(x)).numpy()
    reference = model.predict(x, batch_size=512, verbose=0)
    return report, StageResult(
        stage="SavedModel",
        evaluated_on="target test",
        accuracy=accuracy(outputs, y),
        baseline=STUDENT,
        claim="matches",
        file_bytes=report.size_bytes,
        agreement=agreement(outputs, reference),
        seconds=time.perf_counter() - start,
    )


def export_tflite_stage(model, task, out_dir, quantization):
    """A `.tflite` file run in the LiteRT interpreter and compared with Keras."""
    start = time.perf_counter()
    name = f"student_{'float32' if quantization == 'none' else quantization}.tflite"
    report = export.export_tflite(
        model,
        os.path.join(out_dir, name),
        quantization=quantization,
        representative_data=task.target_unlabelled if quantization == "int8" else None,
    )
    x, y = task.target_test
    outputs = export.tflite_predict(report.path, x)
    reference = model.predict(x, batch_size=512, verbose=0)
    return report, StageResult(
        stage=f"TFLite {quantization}",
        evaluated_on="target test",
        accuracy=accuracy(outputs, y),
        baseline=STUDENT,
        claim="matches",
        file_bytes=report.size_bytes,
        agreement=agreement(outputs, reference),
        seconds=time.perf_counter() - start,
    )
