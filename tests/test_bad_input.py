"""Every public entry point, fed bad input: a clear error naming the argument, and no partial
output.

One table of cases. Each case calls an entry point with one thing wrong and
names the exception type and a pattern its message must contain (the
argument, what was expected or what came). Cases that would write files run
in an empty folder that must still be empty (or hold only what the case put
there) afterwards.
"""

import gzip
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transfer as kt
from keras_transfer import adapt
from keras_transfer import images
from keras_transfer.export.metadata import add_classifier_metadata
from keras_transfer.images.run import train_from_folder
from keras_transfer.multitask import task_batches


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(4)], name="tiny"
    )


def _features(model):
    return keras.Model(model.inputs, model.layers[0].output)


def _plain():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def _with_batch_norm():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Dense(3)]
    )


def _photos(folder, classes=("a", "b")):
    """A folder with one grey PNG per class sub-folder."""
    root = os.path.join(folder, "photos")
    for name in classes:
        os.makedirs(os.path.join(root, name))
        pixels = tf.constant(np.full((8, 8, 1), 100, np.uint8))
        tf.io.write_file(os.path.join(root, name, "0.png"), tf.io.encode_png(pixels))
    return root


def _mkdir(folder, name):
    os.makedirs(os.path.join(folder, name))
    return os.path.join(folder, name)


def _write(folder, name, content):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(content)
    return path


def _corrupt_saved_model(folder):
    os.makedirs(os.path.join(folder, "sm"))
    _write(os.path.join(folder, "sm"), "saved_model.pb", b"not a protobuf")
    return os.path.join(folder, "sm")


def _corrupt_idx(folder):
    os.makedirs(os.path.join(folder, "mnist"))
    for stem in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        _write(os.path.join(folder, "mnist"), stem, gzip.compress(b"\x00\x00\x08\x03garbage"))
    return os.path.join(folder, "mnist")


def _two_outputs(model):
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, [model(inputs), model(inputs)])


def _path(folder, name):
    return os.path.join(folder, name)


def _compiled(model):
    model.compile("adam")
    return model


def _diverged(model):
    copy = keras.models.clone_model(model)
    copy.set_weights([np.full(w.shape, np.nan, "float32") for w in model.get_weights()])
    return copy


def _idx_bomb(folder):
    """IDX files whose headers declare 16 images but whose gzip streams inflate to 50 MB."""
    os.makedirs(os.path.join(folder, "mnist"))
    for stem, rank, shape in (
        ("t10k-images-idx3-ubyte.gz", 3, (16, 28, 28)),
        ("t10k-labels-idx1-ubyte.gz", 1, (16,)),
    ):
        header = bytes([0, 0, 8, rank]) + b"".join(n.to_bytes(4, "big") for n in shape)
        with gzip.open(os.path.join(folder, "mnist", stem), "wb") as f:
            f.write(header)
            for _ in range(50):
                f.write(bytes(2**20))
    return os.path.join(folder, "mnist")


def _config_bomb(folder):
    import zipfile

    path = os.path.join(folder, "bomb.keras")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", b" " * (65 * 2**20))
    return path


def _copied_archive(model, folder, name, change):
    """`model` saved as `name` in `folder`, its entries passed through `change(name, data)`,
    which returns the entries to write in their place."""
    import zipfile

    source = os.path.join(folder, "source.keras")
    model.save(source)
    path = os.path.join(folder, name)
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as copy:
        for entry in original.namelist():
            for new_name, data in change(entry, original.read(entry)):
                copy.writestr(new_name, data)
    os.remove(source)
    return path


def _zip_slip(model, folder):
    def change(name, data):
        extra = [("../escaped.txt", b"x")] if name == "config.json" else []
        return [(name, data)] + extra

    return _copied_archive(model, folder, "slip.keras", change)


def _system_call(model, folder):
    """A Lambda whose function is os.system, told to create a file beside the archive."""
    inputs = keras.Input((8, 8, 1))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(keras.ops.abs, name="lam")(inputs))

    def change(name, data):
        if name == "config.json":
            config = json.loads(data)
            for layer in config["config"]["layers"]:
                if layer["class_name"] == "Lambda":
                    layer["config"]["function"] = {
                        "class_name": "function",
                        "config": "system",
                        "module": "os",
                    }
                    layer["config"]["arguments"] = {"command": f"touch {folder}/pwned"}
            data = json.dumps(config)
        return [(name, data)]

    return _copied_archive(lambda_model, folder, "system.keras", change)


def _object_arrays(folder):
    path = os.path.join(folder, "objects.npz")
    np.savez(path, x=np.array([object(), object()], dtype=object), y=np.zeros(2))
    return path


def _ops_softmax(model):
    inputs = keras.Input((8, 8, 1))
    return keras.Model(inputs, keras.ops.softmax(model(inputs)))


def _usps_with_targets(folder, targets):
    import h5py

    path = os.path.join(folder, "usps.h5")
    with h5py.File(path, "w") as f:
        for split in ("train", "test"):
            f.create_dataset(f"{split}/data", data=np.zeros((len(targets), 256), "float32"))
            f.create_dataset(f"{split}/target", data=np.asarray(targets, "float32"))
    return path


X = np.zeros((16, 8, 8, 1), "float32")
Y = np.arange(16, dtype="int32") % 4
NAN = np.full((16, 8, 8, 1), np.nan, "float32")

# (id, call(model, folder), exception type(s), message pattern, files the case itself left in
# folder)
CASES = [
    # shapes
    (
        "domain_pairs: source/target shapes",
        lambda m, d: kt.domain_pairs((X, Y), np.zeros((4, 9, 9, 1))),
        ValueError,
        "source .*target",
        (),
    ),
    (
        "domain_pairs: empty target",
        lambda m, d: kt.domain_pairs((X, Y), X[:0]),
        ValueError,
        "target inputs are empty",
        (),
    ),
    (
        "domain_pairs: target with labels",
        lambda m, d: kt.domain_pairs((X, Y), (X, Y)),
        ValueError,
        "target",
        (),
    ),
    (
        "domain_pairs: labels count",
        lambda m, d: kt.domain_pairs((X, Y[:3]), X),
        ValueError,
        "source labels",
        (),
    ),
    (
        "domain_pairs: batch_size",
        lambda m, d: kt.domain_pairs((X, Y), X, batch_size=0),
        ValueError,
        "batch_size",
        (),
    ),
    (
        "task_batches: shapes",
        lambda m, d: task_batches({"a": (X, Y), "b": (X[:, :4], Y)}, 4),
        ValueError,
        "one input shape",
        (),
    ),
    (
        "task_batches: empty",
        lambda m, d: task_batches({"a": (X[:0], Y[:0])}, 4),
        ValueError,
        "non-empty",
        (),
    ),
    (
        "resize_images: not images",
        lambda m, d: kt.resize_images(np.zeros(5), (4, 4)),
        ValueError,
        "x",
        (),
    ),
    ("MultiTaskModel: heads", lambda m, d: kt.MultiTaskModel(m, []), ValueError, "heads", ()),
    (
        "DANN: discriminator output",
        lambda m, d: adapt.DANN(
            _features(m),
            keras.Sequential([keras.layers.Dense(4)]),
            discriminator=keras.Sequential([keras.layers.Dense(3)]),
        ),
        ValueError,
        "discriminator",
        (),
    ),
    (
        "DANN: feature_extractor type",
        lambda m, d: adapt.DANN("features", m),
        TypeError,
        "feature_extractor",
        (),
    ),
    (
        "Distiller: student type",
        lambda m, d: kt.Distiller(m, "student"),
        (TypeError, ValueError),
        "student",
        (),
    ),
    (
        "Distiller: temperature",
        lambda m, d: kt.Distiller(m, m, temperature=0),
        ValueError,
        "temperature",
        (),
    ),
    # hyper-parameters: NaN, inf, negative, booleans and zero batches are refused by name
    (
        "Distiller: temperature NaN",
        lambda m, d: kt.Distiller(m, m, temperature=float("nan")),
        ValueError,
        "temperature must be a finite number",
        (),
    ),
    (
        "Distiller: negative hint_weight",
        lambda m, d: kt.Distiller(m, m, hint_weight=-1.0),
        ValueError,
        "hint_weight must be >= 0",
        (),
    ),
    (
        "Distiller: mixup with a cached teacher",
        lambda m, d: kt.Distiller(m, m, mixup=0.2, cache_teacher=True),
        ValueError,
        "use cache_teacher=False with mixup",
        (),
    ),
    (
        "Distiller: negative mixup",
        lambda m, d: kt.Distiller(m, m, mixup=-0.5),
        ValueError,
        "mixup must be >= 0",
        (),
    ),
    (
        "Distiller: teacher_views 0",
        lambda m, d: kt.Distiller(m, m, teacher_views=0),
        ValueError,
        "teacher_views must be",
        (),
    ),
    (
        "Distiller: augment not a layer",
        lambda m, d: kt.Distiller(m, m, augment="flip"),
        TypeError,
        "augment must be a Keras model or layer",
        (),
    ),
    (
        "Distiller.fit: unlabelled shaped unlike x",
        lambda m, d: _compiled(kt.Distiller(m, keras.models.clone_model(m))).fit(
            X, Y, unlabelled=X[:, :4], verbose=0
        ),
        ValueError,
        "unlabelled must hold inputs shaped like x's",
        (),
    ),
    (
        "Distiller: augment changing the input shape",
        lambda m, d: kt.Distiller(m, m, augment=keras.layers.Resizing(4, 4)),
        ValueError,
        r"augment must keep the inputs' shape \(8, 8, 1\); it gives \(4, 4, 1\)",
        (),
    ),
    (
        "Distiller.fit: teacher_views past memory",
        lambda m, d: _compiled(
            kt.Distiller(
                m,
                keras.models.clone_model(m),
                augment=keras.layers.RandomFlip(),
                cache_teacher=True,
                teacher_views=10**7,
            )
        ).fit(X, Y, verbose=0),
        ValueError,
        "teacher_views=10000000 copies of x",
        (),
    ),
    (
        "DistillationSchedule: not a function",
        lambda m, d: kt.DistillationSchedule(0.5),
        TypeError,
        "schedule must be a function",
        (),
    ),
    (
        "DANN: unknown domain_statistics",
        lambda m, d: adapt.DANN(_features(m), keras.layers.Dense(4), domain_statistics="apart"),
        ValueError,
        "domain_statistics must be one of",
        (),
    ),
    (
        "DANN: negative domain_weight",
        lambda m, d: adapt.DANN(_features(m), keras.layers.Dense(4), domain_weight=-1.0),
        ValueError,
        "domain_weight must be >= 0",
        (),
    ),
    (
        "CDAN: discriminator output",
        lambda m, d: adapt.CDAN(
            _features(m),
            keras.Sequential([keras.Input((16,)), keras.layers.Dense(4)]),
            discriminator=keras.Sequential([keras.layers.Dense(3)]),
        ),
        ValueError,
        "discriminator must output one logit",
        (),
    ),
    (
        "CDAN: randomized_dim",
        lambda m, d: adapt.CDAN(_features(m), keras.layers.Dense(4), randomized_dim=0),
        ValueError,
        "randomized_dim",
        (),
    ),
    (
        "adabn: no BatchNormalization",
        lambda m, d: adapt.adabn(_plain(), np.zeros((8, 4), "float32")),
        ValueError,
        "no BatchNormalization",
        (),
    ),
    (
        "tent: a subclassed model",
        lambda m, d: adapt.tent(adapt.MCC(*adapt.digit_networks()), np.zeros((8, 28, 28, 1))),
        TypeError,
        "model must be a Functional or Sequential",
        (),
    ),
    (
        "adabn: a missing file",
        lambda m, d: adapt.adabn(os.path.join(d, "missing.keras"), np.zeros((8, 4))),
        FileNotFoundError,
        "model file not found",
        (),
    ),
    (
        "adabn: target inputs of another shape",
        lambda m, d: adapt.adabn(_with_batch_norm(), np.zeros((8, 5), "float32")),
        ValueError,
        r"x_target holds inputs shaped \(5,\); the model takes \(4,\)",
        (),
    ),
    (
        "tent: NaN target inputs",
        lambda m, d: adapt.tent(_with_batch_norm(), np.full((8, 4), np.nan, "float32")),
        ValueError,
        "x_target holds NaN or inf values",
        (),
    ),
    (
        "tent: unbatched target dataset",
        lambda m, d: adapt.tent(
            _with_batch_norm(), tf.data.Dataset.from_tensor_slices(np.zeros((8, 4), "float32"))
        ),
        ValueError,
        "x_target is a tf.data.Dataset of single examples",
        (),
    ),
    (
        "shot: target inputs of another shape",
        lambda m, d: adapt.shot(_with_batch_norm(), np.zeros((8, 6), "float32"), epochs=1),
        ValueError,
        r"x_target holds inputs shaped \(6,\); the model takes \(4,\)",
        (),
    ),
    (
        "adabn: target labels",
        lambda m, d: adapt.adabn(
            _with_batch_norm(),
            tf.data.Dataset.from_tensor_slices((np.zeros((8, 4)), np.zeros(8))).batch(4),
        ),
        ValueError,
        "x_target must yield inputs only",
        (),
    ),
    (
        "tent: empty target",
        lambda m, d: adapt.tent(_with_batch_norm(), np.zeros((0, 4))),
        ValueError,
        "x_target must be a non-empty array",
        (),
    ),
    (
        "tent: zero epochs",
        lambda m, d: adapt.tent(_with_batch_norm(), np.zeros((8, 4)), epochs=0),
        ValueError,
        "epochs",
        (),
    ),
    (
        "shot: no classifier layer last",
        lambda m, d: adapt.shot(
            keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Softmax()]),
            np.zeros((8, 4)),
        ),
        ValueError,
        "classifier layer",
        (),
    ),
    (
        "shot: negative pseudo_label_weight",
        lambda m, d: adapt.shot(_plain(), np.zeros((8, 4)), pseudo_label_weight=-1.0),
        ValueError,
        "pseudo_label_weight",
        (),
    ),
    (
        "DiscrepancyAdapter: negative weight",
        lambda m, d: adapt.DiscrepancyAdapter(
            _features(m), keras.layers.Dense(4), discrepancy_weight=-0.3
        ),
        ValueError,
        "weight must be >= 0",
        (),
    ),
    (
        "DANNSchedule: negative lambda_max",
        lambda m, d: adapt.DANNSchedule(lambda_max=-1.0),
        ValueError,
        "lambda_max must be >= 0",
        (),
    ),
    (
        "fine_tune: negative learning rate",
        lambda m, d: kt.fine_tune(_features(m), keras.layers.Dense(4), (X, Y), learning_rate=-1e-3),
        ValueError,
        "learning_rate must be > 0",
        (),
    ),
    (
        "fine_tune: boolean epochs",
        lambda m, d: kt.fine_tune(_features(m), keras.layers.Dense(4), (X, Y), head_epochs=True),
        ValueError,
        "head_epochs must be a whole number",
        (),
    ),
    (
        "fine_tune: batch_norm checked before training",
        lambda m, d: kt.fine_tune(_features(m), keras.layers.Dense(4), (X, Y), batch_norm="x"),
        ValueError,
        "batch_norm must be",
        (),
    ),
    (
        "domain_pairs: batch_size 0",
        lambda m, d: kt.domain_pairs((X, Y), X, batch_size=0),
        ValueError,
        "batch_size must be >= 1",
        (),
    ),
    # outputs of the wrong kind for the loss, and labels or names that do not fit
    (
        "fine_tune: softmax head with a from_logits loss",
        lambda m, d: kt.fine_tune(
            _features(m), keras.Sequential([keras.layers.Dense(4, activation="softmax")]), (X, Y)
        ),
        ValueError,
        "head ends in softmax",
        (),
    ),
    (
        "Distiller: student ending in keras.ops.softmax",
        lambda m, d: kt.Distiller(m, _ops_softmax(m)),
        ValueError,
        "student.*softmax",
        (),
    ),
    (
        "classification_report: class_names length",
        lambda m, d: kt.classification_report(np.eye(4)[Y], Y, class_names=["a", "b"]),
        ValueError,
        "class_names must name the 4 classes",
        (),
    ),
    (
        "mmd: one sample",
        lambda m, d: adapt.mmd(np.zeros((1, 3), "float32"), np.ones((1, 3), "float32")),
        ValueError,
        "at least 2 samples",
        (),
    ),
    (
        "load_usps: targets outside 0-9",
        lambda m, d: kt.load_usps(_usps_with_targets(d, [-3, 0.5]), split="train"),
        ValueError,
        "targets outside the digits 0-9",
        ("usps.h5",),
    ),
    # diverged models and hostile files
    (
        "export_tflite: NaN weights",
        lambda m, d: kt.export_tflite(_diverged(m), os.path.join(d, "m.tflite")),
        ValueError,
        "NaN or inf",
        (),
    ),
    (
        "load_mnist: gzip inflating past its header",
        lambda m, d: kt.load_mnist(_idx_bomb(d)),
        ValueError,
        "truncated or padded",
        ("mnist",),
    ),
    (
        "load_backbone: .keras config inflating to 65 MiB",
        lambda m, d: kt.load_backbone(_config_bomb(d)),
        ValueError,
        "over the 64 MiB",
        ("bomb.keras",),
    ),
    # hostile files that are refused today, kept so
    (
        "load_backbone: .keras entry pointing outside the archive",
        lambda m, d: kt.load_backbone(_zip_slip(m, d)),
        ValueError,
        "holds an entry '../escaped.txt' that points outside the archive",
        ("slip.keras",),
    ),
    (
        "load_backbone: .keras config calling os.system",
        lambda m, d: kt.load_backbone(_system_call(m, d)),
        (TypeError, ValueError),
        "could not be deserialized|safe",
        ("system.keras",),  # and no "pwned" file beside it
    ),
    (
        "load_mnist_m: .npz of object arrays",
        lambda m, d: kt.load_mnist_m(_object_arrays(d)),
        ValueError,
        "[Oo]bject arrays|pickle",
        ("objects.npz",),
    ),
    (
        "Distiller: unbuilt student",
        lambda m, d: kt.Distiller(m, keras.Sequential([keras.layers.Dense(4)])),
        ValueError,
        "student must be built",
        (),
    ),
    (
        "Distiller: two-output student",
        lambda m, d: kt.Distiller(m, _two_outputs(m)),
        ValueError,
        "student must have one output",
        (),
    ),
    (
        "Distiller.fit: labels past the class count",
        lambda m, d: _compiled(kt.Distiller(m, keras.models.clone_model(m), alpha=0.5)).fit(
            X, Y + 7, verbose=0
        ),
        ValueError,
        r"y holds class indices 7 to 10, but the model has 4 outputs",
        (),
    ),
    (
        "Distiller.fit: fractional float labels",
        lambda m, d: _compiled(kt.Distiller(m, keras.models.clone_model(m), alpha=0.5)).fit(
            X, Y + 0.5, verbose=0
        ),
        ValueError,
        "y must hold class indices; it holds 0.5, not a whole number",
        (),
    ),
    (
        "Distiller.fit: float labels past the class count",
        lambda m, d: _compiled(kt.Distiller(m, keras.models.clone_model(m), alpha=0.5)).fit(
            X, (Y + 9).astype("float32"), verbose=0
        ),
        ValueError,
        "y holds class indices 9 to 12, but the model has 4 outputs",
        (),
    ),
    (
        "Distiller.fit: one-hot labels under the sparse loss",
        lambda m, d: _compiled(kt.Distiller(m, keras.models.clone_model(m), alpha=0.5)).fit(
            X, np.eye(4)[Y], verbose=0
        ),
        ValueError,
        r"y holds one-hot rows \(16, 4\), but the task loss .* takes class indices",
        (),
    ),
    (
        "Distiller.fit: unbatched dataset",
        lambda m, d: _compiled(kt.Distiller(m, keras.models.clone_model(m), alpha=0.5)).fit(
            tf.data.Dataset.from_tensor_slices((X, Y)), verbose=0
        ),
        ValueError,
        r"x is a tf.data.Dataset of single examples .* call .batch\(batch_size\)",
        (),
    ),
    (
        "fine_tune: one-hot labels under the sparse loss",
        lambda m, d: kt.fine_tune(_features(m), keras.layers.Dense(4), (X, np.eye(4)[Y])),
        ValueError,
        "train_data labels holds one-hot rows",
        (),
    ),
    (
        "fine_tune: fractional float labels",
        lambda m, d: kt.fine_tune(_features(m), keras.layers.Dense(4), (X, Y + 0.5)),
        ValueError,
        "train_data labels must hold class indices",
        (),
    ),
    (
        "fine_tune: unbatched dataset",
        lambda m, d: kt.fine_tune(
            _features(m), keras.layers.Dense(4), tf.data.Dataset.from_tensor_slices((X, Y))
        ),
        ValueError,
        "train_data is a tf.data.Dataset of single examples",
        (),
    ),
    (
        "fine_tune: labels past the class count",
        lambda m, d: kt.fine_tune(_features(m), keras.layers.Dense(4), (X, Y + 7)),
        ValueError,
        "train_data labels holds class indices 7 to 10",
        (),
    ),
    (
        "ZeroShotClassifier.fit: labels past the classes",
        lambda m, d: _compiled(
            kt.ZeroShotClassifier(keras.layers.Flatten(), keras.layers.Dense(64), np.eye(3))
        ).fit(X, Y + 4, verbose=0),
        ValueError,
        "y holds class indices 4 to 7, but the model has 3 outputs",
        (),
    ),
    (
        "tflite_predict: a two-output file",
        lambda m, d: kt.tflite_predict(
            kt.export_tflite(_two_outputs(m), _path(d, "two.tflite")).path, X
        ),
        ValueError,
        "2 outputs",
        ("two.tflite",),
    ),
    (
        "distill_quantize_aware: y length",
        lambda m, d: kt.distill_quantize_aware(m, m, X, Y[:3]),
        ValueError,
        r"y must hold one integer label per input: expected shape \(16,\)",
        (),
    ),
    (
        "distill_quantize_aware: no labels",
        lambda m, d: kt.distill_quantize_aware(m, m, X),
        ValueError,
        "alpha=0.1 .* y is needed",
        (),
    ),
    (
        "distill_quantize_aware: Keras 3 optimizer",
        lambda m, d: kt.distill_quantize_aware(m, m, X, Y, optimizer=keras.optimizers.Adam()),
        TypeError,
        "optimizer must be a tf_keras optimizer",
        (),
    ),
    (
        "distill_quantize_aware: Keras 3 callback",
        lambda m, d: kt.distill_quantize_aware(
            m, m, X, Y, callbacks=[keras.callbacks.EarlyStopping()]
        ),
        TypeError,
        "callbacks must be tf_keras",
        (),
    ),
    (
        "distill_quantize_aware: feature strategy",
        lambda m, d: kt.distill_quantize_aware(
            m, m, X, Y, distillation_loss=keras.distillation.LogitsDistillation()
        ),
        ValueError,
        "distillation_loss",
        (),
    ),
    (
        "mmd: feature shapes",
        lambda m, d: adapt.mmd(np.zeros((8, 3)), np.zeros((8, 4))),
        ValueError,
        "x .*y",
        (),
    ),
    (
        "coral: feature shapes",
        lambda m, d: adapt.coral(np.zeros((8, 3)), np.zeros((8, 4))),
        ValueError,
        "x .*y",
        (),
    ),
    (
        "cmd: feature shapes",
        lambda m, d: adapt.cmd(np.zeros((8, 3)), np.zeros((8, 4))),
        ValueError,
        "x .*y",
        (),
    ),
    (
        "balanced_weight: source without labels",
        lambda m, d: adapt.balanced_weight(
            _features(m), _plain(), np.zeros((64, 8, 8, 1)), np.zeros((64, 8, 8, 1))
        ),
        ValueError,
        "source must be \\(x, y\\)",
        (),
    ),
    (
        "balanced_weight: target smaller than a batch",
        lambda m, d: adapt.balanced_weight(
            _features(m),
            _plain(),
            (np.zeros((64, 8, 8, 1)), np.zeros(64, "int32")),
            np.zeros((10, 8, 8, 1)),
        ),
        ValueError,
        "x_target has 10 samples, fewer than batch_size=64",
        (),
    ),
    (
        "proxy_a_distance: shapes",
        lambda m, d: adapt.proxy_a_distance(np.zeros((8, 3)), np.zeros((8, 4))),
        ValueError,
        "target_features",
        (),
    ),
    (
        "importance_weights: empty",
        lambda m, d: adapt.importance_weights(np.zeros((8, 3)), np.zeros((0, 3))),
        ValueError,
        "target",
        (),
    ),
    (
        "ZeroShotClassifier: table",
        lambda m, d: kt.ZeroShotClassifier(m, m, np.ones(3)),
        ValueError,
        "class_attributes",
        (),
    ),
    ("add_lora: rank", lambda m, d: kt.add_lora(m, rank=0), ValueError, "rank", ()),
    (
        "fine_tune: epochs",
        lambda m, d: kt.fine_tune(_features(m), keras.layers.Dense(2), (X, Y), head_epochs=-1),
        ValueError,
        "head_epochs",
        (),
    ),
    (
        "unfreeze: batch_norm",
        lambda m, d: kt.unfreeze(m, top=1, batch_norm="sometimes"),
        ValueError,
        "batch_norm",
        (),
    ),
    (
        "freeze: until unknown",
        lambda m, d: kt.freeze(m, until="no_such_layer"),
        ValueError,
        "no_such_layer",
        (),
    ),
    # dtypes
    (
        "domain_pairs: float labels",
        lambda m, d: kt.domain_pairs((X, Y + 0.5), X),
        ValueError,
        "integer",
        (),
    ),
    (
        "logme: string labels",
        lambda m, d: kt.logme(np.zeros((20, 2)), np.array(["a"] * 20)),
        ValueError,
        "labels",
        (),
    ),
    (
        "classification_report: labels dtype",
        lambda m, d: kt.classification_report(np.eye(4)[Y % 4], (None, Y + 0.5)),
        ValueError,
        "labels",
        (),
    ),
    # NaN / inf
    (
        "logme: NaN features",
        lambda m, d: kt.logme(np.full((20, 2), np.nan), np.arange(20) % 2),
        ValueError,
        "NaN",
        (),
    ),
    (
        "leep: not probabilities",
        lambda m, d: kt.leep(np.full((4, 2), 0.9), np.arange(4) % 2),
        ValueError,
        "source_probabilities",
        (),
    ),
    (
        "proxy_a_distance: inf",
        lambda m, d: adapt.proxy_a_distance(np.full((8, 3), np.inf), np.zeros((8, 3))),
        ValueError,
        "source_features",
        (),
    ),
    (
        "importance_weights: NaN",
        lambda m, d: adapt.importance_weights(np.full((8, 3), np.nan), np.zeros((8, 3))),
        ValueError,
        "source",
        (),
    ),
    (
        "importance_weighted_risk: NaN",
        lambda m, d: adapt.importance_weighted_risk(
            np.full(8, np.nan), np.zeros((8, 3)), np.zeros((8, 3))
        ),
        ValueError,
        "source_losses",
        (),
    ),
    (
        "classification_report: NaN outputs",
        lambda m, d: kt.classification_report(np.full((16, 4), np.nan), (None, Y)),
        ValueError,
        "NaN",
        (),
    ),
    ("domain_pairs: NaN inputs", lambda m, d: kt.domain_pairs((NAN, Y), X), ValueError, "NaN", ()),
    (
        "export_tflite: NaN calibration",
        lambda m, d: kt.export_tflite(
            m, os.path.join(d, "m.tflite"), quantization="int8", representative_data=NAN
        ),
        ValueError,
        "representative_data",
        (),
    ),
    (
        "ZeroShotClassifier: NaN table",
        lambda m, d: kt.ZeroShotClassifier(m, m, np.full((3, 2), np.nan)),
        ValueError,
        "NaN",
        (),
    ),
    # label ranges
    (
        "domain_pairs: negative label",
        lambda m, d: kt.domain_pairs((X, Y - 1), X),
        ValueError,
        "negative",
        (),
    ),
    (
        "classification_report: label range",
        lambda m, d: kt.classification_report(np.eye(4)[Y], (None, Y + 4)),
        ValueError,
        r"labels must be integers in \[0, 4\)",
        (),
    ),
    (
        "leep: negative label",
        lambda m, d: kt.leep(np.full((4, 2), 0.5), np.array([0, 1, -1, 0])),
        ValueError,
        "labels",
        (),
    ),
    (
        "zero_shot_evaluation: label range",
        lambda m, d: kt.zero_shot_evaluation(
            kt.ZeroShotClassifier(keras.layers.Identity(), keras.layers.Identity(), np.eye(3)),
            np.eye(3),
            [0, 1, 7],
            np.eye(3),
            [0],
        ),
        ValueError,
        "y must",
        (),
    ),
    (
        "task_batches: negative label",
        lambda m, d: task_batches({"a": (X, Y - 1)}, 4),
        ValueError,
        "negative",
        (),
    ),
    # missing files
    (
        "load_mnist: missing folder",
        lambda m, d: kt.load_mnist(os.path.join(d, "none")),
        FileNotFoundError,
        "path",
        (),
    ),
    (
        "load_usps: missing file",
        lambda m, d: kt.load_usps(os.path.join(d, "usps.h5")),
        FileNotFoundError,
        "path",
        (),
    ),
    (
        "load_fashion_mnist: missing folder",
        lambda m, d: kt.load_fashion_mnist(os.path.join(d, "none")),
        FileNotFoundError,
        "path",
        (),
    ),
    (
        "load_backbone: missing .keras",
        lambda m, d: kt.load_backbone(os.path.join(d, "none.keras")),
        (FileNotFoundError, ValueError),
        "none.keras",
        (),
    ),
    (
        "load_backbone: missing SavedModel",
        lambda m, d: kt.load_backbone(os.path.join(d, "no_saved_model")),
        (FileNotFoundError, ValueError),
        "no_saved_model",
        (),
    ),
    (
        "saved_model_teacher: missing",
        lambda m, d: kt.saved_model_teacher(os.path.join(d, "none")),
        (FileNotFoundError, ValueError),
        "none",
        (),
    ),
    (
        "tflite_predict: missing",
        lambda m, d: kt.tflite_predict(os.path.join(d, "none.tflite"), X),
        FileNotFoundError,
        "none.tflite",
        (),
    ),
    (
        "extract_features: cache is a file",
        lambda m, d: kt.extract_features(m, X, cache_dir=_write(d, "f", b"x")),
        NotADirectoryError,
        "cache_dir",
        ("f",),
    ),
    # corrupt files
    (
        "load_backbone: corrupt .keras",
        lambda m, d: kt.load_backbone(_write(d, "bad.keras", b"not a zip")),
        ValueError,
        "bad.keras",
        ("bad.keras",),
    ),
    (
        "load_backbone: corrupt SavedModel",
        lambda m, d: kt.load_backbone(_corrupt_saved_model(d)),
        ValueError,
        "sm",
        ("sm",),
    ),
    (
        "tflite_predict: corrupt .tflite",
        lambda m, d: kt.tflite_predict(_write(d, "bad.tflite", b"TFL3" * 8), X),
        ValueError,
        "not a valid TFLite model",
        ("bad.tflite",),
    ),
    (
        "compare: corrupt .tflite",
        lambda m, d: kt.compare(_write(d, "bad.tflite", b"\x00" * 64), m, (X, Y)),
        ValueError,
        "not a valid TFLite model",
        ("bad.tflite",),
    ),
    (
        "benchmark_tflite: corrupt .tflite",
        lambda m, d: kt.benchmark_tflite(_write(d, "bad.tflite", b"x" * 64)),
        ValueError,
        "not a valid TFLite model",
        ("bad.tflite",),
    ),
    (
        "load_usps: corrupt .h5",
        lambda m, d: kt.load_usps(_write(d, "usps.h5", b"not hdf5")),
        ValueError,
        "not the USPS HDF5 file",
        ("usps.h5",),
    ),
    (
        "load_mnist: corrupt IDX",
        lambda m, d: kt.load_mnist(_corrupt_idx(d)),
        ValueError,
        "mnist",
        ("mnist",),
    ),
    # existing output is never overwritten without overwrite=True, and nothing partial is left
    (
        "export_tflite: existing file",
        lambda m, d: kt.export_tflite(m, _write(d, "m.tflite", b"keep")),
        FileExistsError,
        "overwrite",
        ("m.tflite",),
    ),
    (
        "export_saved_model: existing folder",
        lambda m, d: kt.export_saved_model(m, _write(d, "sm", b"keep")),
        FileExistsError,
        "overwrite",
        ("sm",),
    ),
    (
        "export_tflite: bad quantization",
        lambda m, d: kt.export_tflite(m, os.path.join(d, "m.tflite"), quantization="int3"),
        ValueError,
        "quantization",
        (),
    ),
    (
        "export_tflite: int8 without data",
        lambda m, d: kt.export_tflite(m, os.path.join(d, "m.tflite"), quantization="int8"),
        ValueError,
        "representative_data",
        (),
    ),
    (
        "plot_history: empty",
        lambda m, d: kt.plot_history({}, os.path.join(d, "h.png")),
        ValueError,
        "history",
        (),
    ),
    (
        "plot_confusion_matrix: existing",
        lambda m, d: kt.plot_confusion_matrix(
            kt.classification_report(np.eye(4)[Y], (None, Y)), _write(d, "c.png", b"keep")
        ),
        FileExistsError,
        "overwrite",
        ("c.png",),
    ),
    (
        "read_image_folder: not a folder",
        lambda m, d: images.read_image_folder(os.path.join(d, "none")),
        FileNotFoundError,
        "directory must be a folder",
        (),
    ),
    (
        "read_image_folder: color_mode",
        lambda m, d: images.read_image_folder(d, color_mode="cmyk"),
        ValueError,
        "color_mode must be one of",
        (),
    ),
    (
        "read_image_folder: image_size",
        lambda m, d: images.read_image_folder(d, image_size=(32,)),
        ValueError,
        "image_size must be \\(height, width\\)",
        (),
    ),
    (
        "read_image_folder: one class",
        lambda m, d: images.read_image_folder(_photos(d, ("only",))),
        ValueError,
        "at least two class sub-folders",
        ("photos",),
    ),
    (
        "split_folder: shares leave nothing to train on",
        lambda m, d: images.split_folder(images.ImageFolder(X, Y, ("a",) * 4, ()), 0.5, 0.5),
        ValueError,
        "validation_split \\+ test_split must leave images",
        (),
    ),
    (
        "train_image_classifier: adapter",
        lambda m, d: images.train_image_classifier((X, Y), adapter="dann"),
        ValueError,
        "adapter must be one of",
        (),
    ),
    (
        "train_image_classifier: no labels",
        lambda m, d: images.train_image_classifier(X),
        ValueError,
        "train must carry labels",
        (),
    ),
    (
        "train_image_classifier: augment",
        lambda m, d: images.train_image_classifier((X, Y), augment="rotate"),
        ValueError,
        "augment must be one of",
        (),
    ),
    (
        "train_from_folder: quantization",
        lambda m, d: train_from_folder(d, quantization="int4"),
        ValueError,
        "quantization must be one of",
        (),
    ),
    (
        "train_from_folder: out holds the user's files",
        lambda m, d: train_from_folder(
            _photos(d), out=os.path.dirname(_write(_mkdir(d, "out"), "mine.txt", b"keep"))
        ),
        FileExistsError,
        "not a keras-transfer run",
        ("out", "photos"),
    ),
    (
        "predict_images: top_k",
        lambda m, d: images.predict_images(_write(d, "m.tflite", b"x"), [], top_k=0),
        ValueError,
        "top_k must be a whole number",
        ("m.tflite",),
    ),
    (
        "predict_images: missing image",
        lambda m, d: images.predict_images(
            _write(d, "m.tflite", b"x"), [os.path.join(d, "cat.jpg")]
        ),
        FileNotFoundError,
        "image file not found",
        ("m.tflite",),
    ),
    (
        "add_classifier_metadata: not a TFLite file",
        lambda m, d: add_classifier_metadata(_write(d, "m.tflite", b"not a model"), ["a"]),
        ValueError,
        "is not a TFLite model",
        ("m.tflite",),
    ),
]


@pytest.mark.parametrize("case, call, error, message, left", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_named_error_and_leaves_nothing_behind(
    model, tmp_path, case, call, error, message, left
):
    with pytest.raises(error, match=message):
        call(model, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(left), "a failed call left files behind"
    if "existing" in case:  # the file that was there is untouched
        assert (tmp_path / left[0]).read_bytes() == b"keep"


def test_the_readme_states_the_number_of_cases():
    readme = open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")).read()
    assert f"{len(CASES)} bad-input cases" in readme


def test_a_boolean_seen_mask_reads_as_the_classes_it_marks():
    table = np.eye(4, dtype="float32")
    zsl = kt.ZeroShotClassifier(keras.layers.Identity(), keras.layers.Identity(), table)
    x, y = np.eye(4, dtype="float32"), np.arange(4)
    by_mask = kt.zero_shot_evaluation(zsl, x, y, table, np.array([True, True, False, False]))
    assert by_mask == kt.zero_shot_evaluation(zsl, x, y, table, [0, 1])


def test_numpy_numbers_are_taken_where_python_numbers_are(model):
    distiller = kt.Distiller(model, model, temperature=np.float32(2.0), alpha=np.float64(0.5))
    assert distiller.temperature == 2.0 and distiller.alpha == 0.5
    assert adapt.DANNSchedule(lambda_max=np.float32(0.5)).lambda_max == 0.5
    assert len(list(kt.domain_pairs((X, Y), X, batch_size=np.int64(8)))) == 2


def test_fine_tune_passes_sample_weights_on(model):
    """(x, y, sample_weight): all-zero weights make a zero loss, so nothing trains."""
    backbone = _features(model)
    for weights, moves in ((np.zeros(16, "float32"), False), (np.ones(16, "float32"), True)):
        head = keras.Sequential([keras.Input((64,)), keras.layers.Dense(4)])
        start = [w.copy() for w in head.get_weights()]
        kt.fine_tune(
            backbone, head, (X + 1.0, Y, weights), head_epochs=1, fine_tune_epochs=0, verbose=0
        )
        moved = any(not np.array_equal(a, b) for a, b in zip(start, head.get_weights()))
        assert moved == moves


def test_images_in_0_255_warn_where_the_model_does_not_rescale(model, tmp_path):
    bright = (X + 1.0) * 255.0
    with pytest.warns(UserWarning, match="source inputs holds images with values up to 255"):
        kt.domain_pairs((bright, Y), X, batch_size=8)
    with pytest.warns(UserWarning, match="representative_data holds images"):
        kt.export_tflite(model, tmp_path / "m.tflite", "int8", representative_data=bright)
    inputs = keras.Input((8, 8, 1))
    rescaling = keras.Model(inputs, model(keras.layers.Rescaling(1 / 255)(inputs)))
    import warnings

    with warnings.catch_warnings():
        # A model that rescales its inputs itself, or [0, 1] images: no warning.
        warnings.filterwarnings("error", message=".*holds images")
        kt.export_tflite(rescaling, tmp_path / "r.tflite", "int8", representative_data=bright)
        kt.domain_pairs((X, Y), X, batch_size=8)
    with pytest.warns(
        UserWarning, match=r"channels first\? .* np.moveaxis\(source inputs, 1, -1\)"
    ):
        kt.domain_pairs((np.moveaxis(X, -1, 1), Y), np.moveaxis(X, -1, 1), batch_size=8)


def test_compare_warns_when_the_file_is_not_the_models_export(model, tmp_path):
    path = str(tmp_path / "m.tflite")
    kt.export_tflite(model, path)
    x = np.random.default_rng(0).uniform(size=(64, 8, 8, 1)).astype("float32")
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*is keras_model the model")
        assert kt.compare(path, model, x).agreement == 1.0
    reversed_model = keras.models.clone_model(model)
    reversed_model.set_weights([-w for w in model.get_weights()])  # argmax becomes argmin
    with pytest.warns(UserWarning, match=r"agree on the top class of only 0% .* is keras_model"):
        kt.compare(path, reversed_model, x)
