"""From labelled images to a trained classifier: the stages `keras-transfer train` runs."""

import os
import time

import keras
import numpy as np

from keras_transfer._files import atomic_file
from keras_transfer.images.networks import BUILT_IN
from keras_transfer.images.networks import build_classifier
from keras_transfer.images.networks import compact_cnn
from keras_transfer.images.networks import default_augmentation
from keras_transfer.images.networks import with_probabilities

ADAPTERS = ("adabn", "tent", "shot")


def _arrays(data, argument):
    """(float32 images in [0, 255], int32 labels or None) from an ImageFolder or a tuple."""
    if data is None:
        return None, None
    if hasattr(data, "images"):
        images, labels = data.images, data.labels
    elif isinstance(data, tuple) and len(data) == 2:
        images, labels = data
    else:
        images, labels = data, None
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{argument} must hold images (n, height, width, 1 or 3); got shape {images.shape}."
        )
    return images.astype("float32"), None if labels is None else np.asarray(labels, np.int32)


class _Stages:
    """Named training stages whose results are kept in `work_dir` when one is given.

    A finished stage leaves `stages/<name>.keras`; a rerun loads it instead of
    training. A stage that trains with `fit` keeps a `BackupAndRestore` backup in
    `backup/<name>` so that a killed run continues from its last epoch.
    """

    def __init__(self, work_dir, progress, names):
        self.work_dir = work_dir
        self.progress = progress
        self.names = names

    def _file(self, name):
        return os.path.join(self.work_dir, "stages", name.replace(" ", "_") + ".keras")

    def finished(self, name):
        if self.work_dir and os.path.isfile(self._file(name)):
            return keras.saving.load_model(self._file(name), safe_mode=True)
        return None

    def begin(self, name):
        if self.progress is not None:
            self.progress.begin(self.names.index(name), len(self.names), name)
        self._start = time.perf_counter()

    def end(self, name, model=None):
        """Keeps `model` as the stage's result (None: the stage reruns on resume)."""
        if self.work_dir and model is not None:
            os.makedirs(os.path.dirname(self._file(name)), exist_ok=True)
            with atomic_file(self._file(name), ".keras", kind="keras") as temporary:
                model.save(temporary)
        if self.progress is not None:
            self.progress.end(time.perf_counter() - self._start)

    def callbacks(self, name):
        callbacks = [] if self.progress is None else [self.progress]
        if self.work_dir:
            backup = os.path.join(self.work_dir, "backup", name.replace(" ", "_"))
            # Two copies: a kill while the weights are written falls back to the previous ones.
            callbacks.append(keras.callbacks.BackupAndRestore(backup, double_checkpoint=True))
        return callbacks


def stage_names(backbone=None, unlabelled=False, student=None, qat=False):
    """The stages `train_image_classifier` runs for these choices, in order.

    Example:
    >>> stage_names(backbone="mobilenet_v2", unlabelled=True)
    ['train head', 'fine-tune', 'adapt']
    """
    names = ["train"] if backbone in (None, BUILT_IN) else ["train head", "fine-tune"]
    names += ["adapt"] if unlabelled else []
    names += ["distil"] if student else []
    names += ["quantization-aware training"] if qat else []
    return names


def _batches(x, y, batch_size, augmentation, seed):
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
    data = data.batch(batch_size)
    if augmentation is not None:
        data = data.map(lambda images, labels: (augmentation(images, training=True), labels))
    return data.prefetch(tf.data.AUTOTUNE)


def train_image_classifier(
    train,
    validation=None,
    backbone=None,
    weights=None,
    unlabelled=None,
    adapter="adabn",
    student=None,
    qat=False,
    epochs=40,
    fine_tune_epochs=10,
    distill_epochs=30,
    qat_epochs=3,
    batch_size=32,
    learning_rate=2e-3,
    augment="shift",
    flip=False,
    seed=0,
    work_dir=None,
    progress=None,
):
    """Trains an image classifier from labelled images, in the stages `stage_names` lists.

    - train: with no backbone, the built-in `compact_cnn` from scratch for
      `epochs`, Adam with the rate decaying from `learning_rate` to 0 on a cosine
      (on 2,400 MNIST-M images: 87.0% after 40 epochs where a constant 1e-3 with
      early stopping on the validation loss stopped at 16 epochs and 55.7%);
      with a backbone, the two-phase fine-tune: "train head" on the frozen
      backbone (`epochs` capped at 10), then "fine-tune" with it unfrozen
      (BatchNorm frozen) at a tenth of the rate.
    - adapt (with `unlabelled` images): `adapter` adapts the model to them with
      no labels: "adabn" (`adapt.adabn`: BatchNorm statistics of the unlabelled
      images, no training), "tent" or "shot". Measured on MNIST-M under uneven
      light (seed 0, 83.2% before): AdaBN 85.2 in 9 s, TENT 83.6, SHOT at its
      defaults 65.8 (its SGD at 0.01 wrecked this Adam-trained network; 83.0 at
      0.001), so AdaBN is the default.
    - distil (with a `student`): a `Distiller` (library defaults: T=1, alpha=0.1,
      teacher and student on the same augmented view) trains the student from
      the model on the labelled images and the unlabelled ones.
    - quantization-aware training (with `qat`): `qat_epochs` of tfmot's QAT on
      the labels; the returned model is then a tf_keras model with probabilities out.

    Args:
        train: an `ImageFolder` or `(images, labels)`, images in [0, 255].
        validation: the same, for the accuracy logged each epoch, or None.
        backbone, weights: as in `build_classifier`.
        unlabelled: images (an `ImageFolder` or an array) from where the model will run.
        adapter: "adabn", "tent" or "shot".
        student: None, "compact_cnn" (width 16) or a keras.applications name
            (random weights), distilled from the trained model.
        qat: quantization-aware training of the final model.
        epochs, fine_tune_epochs, distill_epochs, qat_epochs: per stage.
        batch_size, learning_rate: for the training stages.
        augment, flip: `default_augmentation(augment, flip)` on each training batch.
        seed: seeds weights, batch order and augmentation.
        work_dir: a folder to keep finished stages and backups in, so that a
            rerun continues where a killed one stopped; None keeps nothing.
        progress: a `StageProgress` (or None) told where each stage begins and ends.

    Returns:
        `(model, histories)`: the final Keras model (logits out; probabilities for
        `qat`) and `{stage: keras History}` for the stages that trained now.

    Example:
    >>> model, histories = train_image_classifier(parts["train"])  # doctest: +SKIP
    """
    if adapter not in ADAPTERS:
        raise ValueError(f"adapter must be one of {ADAPTERS}; got {adapter!r}.")
    x, y = _arrays(train, "train")
    if y is None:
        raise ValueError("train must carry labels: an ImageFolder or (images, labels).")
    x_val, y_val = _arrays(validation, "validation")
    has_validation = x_val is not None and len(x_val) > 0
    x_unl, _ = _arrays(unlabelled, "unlabelled")
    num_classes = int(y.max()) + 1
    names = stage_names(backbone, x_unl is not None, student, qat)
    stages = _Stages(work_dir, progress, names)
    keras.utils.set_random_seed(seed)
    augmentation = default_augmentation(augment, flip, seed)
    validation_data = (x_val, y_val) if has_validation else None
    histories = {}

    def fit(name, model, rate, stage_epochs):
        steps = stage_epochs * -(-len(x) // batch_size)
        model.compile(
            keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(rate, steps)),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        stages.begin(name)
        histories[name] = model.fit(
            _batches(x, y, batch_size, augmentation, seed),
            validation_data=validation_data,
            epochs=stage_epochs,
            shuffle=False,  # the dataset shuffles itself
            verbose=0,
            callbacks=stages.callbacks(name),
        )
        stages.end(name, model)
        return model

    model, features = build_classifier(x.shape[1:], num_classes, backbone, weights)
    if features is None:
        model = stages.finished("train") or fit("train", model, learning_rate, epochs)
    else:
        from keras_transfer.finetune import freeze
        from keras_transfer.finetune import unfreeze

        head = stages.finished("train head")
        if head is None:
            freeze(features)
            model = fit("train head", model, learning_rate, min(epochs, 10))
        else:
            model = head
        tuned = stages.finished("fine-tune")
        if tuned is None:
            unfreeze(model.get_layer(features.name), from_layer=0)
            model = fit("fine-tune", model, learning_rate / 10, fine_tune_epochs)
        else:
            model = tuned
    if x_unl is not None:
        model = stages.finished("adapt") or _adapt(model, x_unl, adapter, seed, stages)
    if student:
        model = stages.finished("distil") or _distil(
            model,
            student,
            x,
            y,
            x_unl,
            validation_data,
            distill_epochs,
            batch_size,
            learning_rate,
            augmentation,
            seed,
            stages,
            histories,
        )
    if qat:
        model = _quantization_aware(model, x, y, qat_epochs, batch_size, stages, histories)
    return model, histories


def _adapt(model, x_target, adapter, seed, stages):
    from keras_transfer import adapt

    stages.begin("adapt")
    if adapter == "shot":
        adapted = adapt.shot(model, x_target, seed=seed)
    elif adapter == "tent":
        adapted = adapt.tent(model, x_target)
    else:
        adapted = adapt.adabn(model, x_target)
    stages.end("adapt", adapted)
    return adapted


def _student_network(student, input_shape, num_classes):
    if student == BUILT_IN:
        return compact_cnn(input_shape, num_classes, width=16, name="student")
    model, _ = build_classifier(input_shape, num_classes, student, None)
    return model


def _distil(
    model,
    student,
    x,
    y,
    x_unl,
    validation_data,
    epochs,
    batch_size,
    rate,
    augmentation,
    seed,
    stages,
    histories,
):
    from keras_transfer.distill import Distiller

    network = _student_network(student, x.shape[1:], model.outputs[0].shape[-1])
    distiller = Distiller(model, network, augment=augmentation)
    distiller.compile(keras.optimizers.Adam(rate / 2), metrics=["accuracy"])
    stages.begin("distil")
    histories["distil"] = distiller.fit(
        x,
        y,
        unlabelled=x_unl,
        validation_data=validation_data,
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        callbacks=stages.callbacks("distil"),
    )
    stages.end("distil", distiller.student)
    return distiller.student


def _quantization_aware(model, x, y, epochs, batch_size, stages, histories):
    from keras_transfer.quantize import _import_tf_keras
    from keras_transfer.quantize import quantize_aware

    tf_keras = _import_tf_keras()
    stages.begin("quantization-aware training")
    qat = quantize_aware(with_probabilities(pixels_folded(model)), calibration_data=x[:500])
    qat.compile(
        tf_keras.optimizers.Adam(1e-4),
        tf_keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    histories["quantization-aware training"] = qat.fit(
        x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True
    )
    # A tf_keras QAT model is not a Keras 3 `.keras` file: this stage reruns on resume.
    stages.end("quantization-aware training")
    return qat


def pixels_folded(model):
    """`model` with its "pixels" `Rescaling` folded into the convolution after it.

    tfmot cannot quantize a `Rescaling` layer. With no offset, scaling the pixels
    by `s` before a convolution equals scaling its kernel by `s` (zero padding stays
    zero), so the folded model gives the same outputs and still takes [0, 255] pixels.
    A model without that layer, or where it cannot be folded, is returned as it is.

    Example:
    >>> folded = pixels_folded(compact_cnn((8, 8, 1), 3))
    >>> [layer.name for layer in folded.layers[:2]]
    ['image', 'conv1']
    """
    names = [layer.name for layer in model.layers]
    if "pixels" not in names:
        return model
    pixels = model.get_layer("pixels")
    after = model.layers[names.index("pixels") + 1]
    if pixels.offset != 0 or type(after).__name__ != "Conv2D" or after.use_bias:
        return model
    config = model.get_config()
    source = pixels._inbound_nodes[0].input_tensors[0]._keras_history[0].name
    config["layers"] = [layer for layer in config["layers"] if layer["name"] != "pixels"]

    def rewire(node):
        if isinstance(node, dict):
            node = {key: rewire(value) for key, value in node.items()}
            if node.get("keras_history") and node["keras_history"][0] == "pixels":
                node["keras_history"] = [source, *node["keras_history"][1:]]
            return node
        if isinstance(node, (list, tuple)):
            return [rewire(value) for value in node]
        return node

    config["layers"] = rewire(config["layers"])
    folded = model.__class__.from_config(config)
    for layer in folded.layers:
        layer.set_weights(model.get_layer(layer.name).get_weights())
    kernel = after.get_weights()[0] * np.float32(pixels.scale)
    folded.get_layer(after.name).set_weights([kernel])
    return folded
