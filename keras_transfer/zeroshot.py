"""Zero-shot learning through attribute embeddings.

An image encoder f and an attribute encoder g map images and class attribute
vectors into one space; the score of class c for image x is f(x)·g(a_c).
Trained on seen classes with the hinge ranking loss
max(0, k − f(x)·g(a_y) + max_{m≠y} f(x)·g(a_m)), the model ranks classes it
never saw from their attribute vectors alone.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import renamed_argument
from keras_transfer._checks import require_finite
from keras_transfer._checks import require_label_range
from keras_transfer._checks import require_layer
from keras_transfer._training import BackboneAlias
from keras_transfer._training import MultiWorkerFit
from keras_transfer._training import step_logs
from keras_transfer.datasets import FASHION_MNIST_CLASSES  # noqa: F401  (rows of the table below)


def hinge_ranking_loss(y_true, scores, margin=1.0):
    """Per-sample max(0, margin − s_y + max_{m≠y} s_m).

    Args:
        y_true: (n,) class indices (columns of `scores`).
        scores: (n, C) compatibility scores, C >= 2.
        margin: the k of the formula.

    Returns:
        (n,) losses.

    Example:
    >>> float(hinge_ranking_loss([0], [[2.0, 1.5, -1.0]], margin=1.0)[0])
    0.5
    """
    scores = tf.convert_to_tensor(scores, dtype=tf.float32)
    y_true = tf.cast(tf.reshape(y_true, [-1]), tf.int32)
    true_class = tf.one_hot(y_true, tf.shape(scores)[-1], dtype=scores.dtype)
    true_score = tf.reduce_sum(scores * true_class, axis=-1)
    lowest = tf.reduce_min(scores, axis=-1, keepdims=True)
    best_other = tf.reduce_max(tf.where(true_class > 0, lowest - 1.0, scores), axis=-1)
    return tf.nn.relu(margin - true_score + best_other)


@keras.saving.register_keras_serializable(package="keras_transfer")
class HingeRankingLoss(keras.losses.Loss):
    """`hinge_ranking_loss` for `compile()`: y_true class indices, y_pred scores (n, C).

    Args:
        margin: the margin k.

    Example:
    >>> zsl.compile("adam", loss=HingeRankingLoss(margin=1.0))  # doctest: +SKIP
    """

    def __init__(self, margin=1.0, name="hinge_ranking", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if margin <= 0:
            raise ValueError(f"margin must be > 0; got {margin}.")
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return hinge_ranking_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def _attribute_table(class_attributes, argument="class_attributes"):
    table = np.asarray(class_attributes, dtype="float32")
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 1:
        raise ValueError(
            f"{argument} must be a (classes, attributes) table with at least 2 classes; "
            f"got shape {table.shape}."
        )
    require_finite(table, argument)
    return table


@keras.saving.register_keras_serializable(package="keras_transfer")
class ZeroShotClassifier(BackboneAlias, MultiWorkerFit, keras.Model):
    """Scores images against classes described by attribute vectors: f(x)·g(a_c).

    `call` scores the classes of `class_attributes` (the training classes):
    compile it with `HingeRankingLoss` and fit on their labels (row indices).
    `with_classes(table)` gives a classifier over any other classes, unseen
    ones included, sharing the trained encoders.

    Args:
        backbone: Keras model from images to (n, d) embeddings (`image_encoder=`
            before 0.2, still accepted for one release).
        attribute_encoder: Keras model from (C, a) attribute vectors to (C, d).
        class_attributes: (C, a) attribute table of the classes `call` scores.

    Example:
    >>> zsl = ZeroShotClassifier(cnn, keras.layers.Dense(64), attributes[seen])  # doctest: +SKIP
    >>> zsl.compile("adam", loss=HingeRankingLoss())  # doctest: +SKIP
    >>> zsl.fit(x_seen, y_seen_as_rows_of_seen, epochs=5)  # doctest: +SKIP
    >>> unseen_scores = zsl.with_classes(attributes[unseen]).predict(x_unseen)  # doctest: +SKIP
    """

    # Stored as `image_encoder`, the first release's name, in the config and the weights file.
    _backbone_attribute = "image_encoder"

    def __init__(self, backbone=None, attribute_encoder=None, class_attributes=None, **kwargs):
        backbone = renamed_argument(
            kwargs, "image_encoder", "backbone", backbone, None, "ZeroShotClassifier"
        )
        super().__init__(**kwargs)
        require_layer(backbone, "backbone (formerly image_encoder)")
        require_layer(attribute_encoder, "attribute_encoder")
        if class_attributes is None:
            raise TypeError("ZeroShotClassifier needs class_attributes, a (C, a) table.")
        self.image_encoder = backbone
        self.attribute_encoder = attribute_encoder
        self.class_attributes = _attribute_table(class_attributes)

    def call(self, inputs, training=False):
        images = self.image_encoder(inputs, training=training)
        classes = self.attribute_encoder(tf.constant(self.class_attributes), training=training)
        if (
            images.shape[-1] is not None
            and classes.shape[-1] is not None
            and images.shape[-1] != classes.shape[-1]
        ):
            raise ValueError(
                f"backbone gives {images.shape[-1]}-d embeddings and attribute_encoder "
                f"{classes.shape[-1]}-d; they must match to be compared."
            )
        return tf.matmul(images, classes, transpose_b=True)

    # Keras' own steps, with logs that also run on several workers (see step_logs).
    def train_step(self, data):
        return step_logs(self, super().train_step(data))

    def test_step(self, data):
        return step_logs(self, super().test_step(data))

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit`; array labels must be rows of `class_attributes`."""
        require_label_range(y, len(self.class_attributes), "y")
        return super().fit(x, y, **kwargs)

    def with_classes(self, class_attributes):
        """A classifier over the classes of another attribute table, sharing these encoders."""
        table = _attribute_table(class_attributes)
        if table.shape[1] != self.class_attributes.shape[1]:
            raise ValueError(
                f"class_attributes has {table.shape[1]} attributes per class; this model was "
                f"built on {self.class_attributes.shape[1]}."
            )
        return ZeroShotClassifier(
            self.image_encoder, self.attribute_encoder, table, name=f"{self.name}_classes"
        )

    def get_config(self):
        return {
            **super().get_config(),
            "image_encoder": keras.saving.serialize_keras_object(self.image_encoder),
            "attribute_encoder": keras.saving.serialize_keras_object(self.attribute_encoder),
            "class_attributes": self.class_attributes.tolist(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config.pop("image_encoder"))
        config["attribute_encoder"] = keras.saving.deserialize_keras_object(
            config["attribute_encoder"]
        )
        return cls(**config)


def per_class_accuracy(y_true, y_pred, classes):
    """Mean over `classes` of each class's top-1 accuracy (the standard zero-shot measure)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    accuracies = [np.mean(y_pred[y_true == c] == c) for c in classes if np.any(y_true == c)]
    if not accuracies:
        raise ValueError(f"no test sample belongs to classes {list(classes)}.")
    return float(np.mean(accuracies))


def zero_shot_evaluation(
    model, x, y, class_attributes, seen_classes, calibration=0.0, batch_size=256
):
    """Conventional and generalized zero-shot accuracy (Xian et al. 2018).

    Args:
        model: a trained `ZeroShotClassifier`.
        x, y: test images and their classes, as row indices of `class_attributes`.
        class_attributes: (C, a) attribute table of all classes, seen and unseen.
        seen_classes: the rows of the classes trained on (indices, or a boolean mask
            over the rows); the others are unseen.
        calibration: subtracted from seen classes' scores in the generalized
            setting (calibrated stacking, Chao et al. 2016); 0 for none.
        batch_size: prediction batch size.

    Returns:
        A dict: `zsl` (unseen images among unseen classes only), `seen` and
        `unseen` (each among all classes), `harmonic_mean` of those two, and
        `chance_zsl` (1 / number of unseen classes). Accuracies are per-class means.

    Example:
    >>> seen = [0, 1, 4, 6, 7, 8, 9]
    >>> scores = zero_shot_evaluation(zsl, x_test, y_test, attributes, seen)  # doctest: +SKIP
    """
    table = _attribute_table(class_attributes)
    y = np.asarray(y).reshape(-1)
    mask = np.asarray(seen_classes)
    if mask.dtype == bool:  # a mask over the rows of class_attributes, not class indices
        if mask.shape != (len(table),):
            raise ValueError(
                f"a boolean seen_classes must mark each of the {len(table)} classes; "
                f"got shape {mask.shape}."
            )
        seen_classes = np.flatnonzero(mask)
    seen = sorted(set(int(c) for c in seen_classes))
    unseen = [c for c in range(len(table)) if c not in seen]
    if not unseen or not seen or max(seen) >= len(table) or min(seen) < 0:
        raise ValueError(
            f"seen_classes must be a proper subset of the {len(table)} rows of class_attributes; "
            f"got {list(seen_classes)}."
        )
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must be non-empty and of one length; got {len(x)} and {len(y)}.")
    if y.min() < 0 or y.max() >= len(table):
        raise ValueError(
            f"y must hold rows of class_attributes (0..{len(table) - 1}); got {y.min()}..{y.max()}."
        )
    scores = model.with_classes(table).predict(x, batch_size=batch_size, verbose=0)
    is_unseen = np.isin(y, unseen)
    zsl_pred = np.array(unseen)[np.argmax(scores[:, unseen], axis=-1)]
    calibrated = scores - calibration * np.isin(np.arange(len(table)), seen)[None, :]
    gzsl_pred = np.argmax(calibrated, axis=-1)
    seen_accuracy = per_class_accuracy(y[~is_unseen], gzsl_pred[~is_unseen], seen)
    unseen_accuracy = per_class_accuracy(y[is_unseen], gzsl_pred[is_unseen], unseen)
    harmonic = (
        0.0
        if seen_accuracy + unseen_accuracy == 0
        else (2 * seen_accuracy * unseen_accuracy / (seen_accuracy + unseen_accuracy))
    )
    return {
        "zsl": per_class_accuracy(y[is_unseen], zsl_pred[is_unseen], unseen),
        "seen": seen_accuracy,
        "unseen": unseen_accuracy,
        "harmonic_mean": float(harmonic),
        "chance_zsl": 1.0 / len(unseen),
    }


# Attributes of the 10 Fashion-MNIST classes, written for this toolkit from what the 28x28
# silhouettes show (1 = the class has it). Rows follow the dataset's labels 0-9.
FASHION_MNIST_ATTRIBUTE_NAMES = (
    "upper_body",
    "covers_legs",
    "footwear",
    "sleeves",
    "long_sleeves",
    "front_opening",
    "collar",
    "two_legs",
    "open_straps",
    "covers_ankle",
    "laces",
    "handle",
    "boxy",
    "heel",
    "taller_than_wide",
    "flared_bottom",
)
FASHION_MNIST_ATTRIBUTES = np.array(
    [
        # up legs foot slv long open collar 2leg strap ankle lace handle box heel tall flare
        [1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # T-shirt/top
        [0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0],  # Trouser
        [1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # Pullover
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],  # Dress
        [1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0],  # Coat
        [0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0],  # Sandal
        [1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # Shirt
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],  # Sneaker
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0],  # Bag
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0],  # Ankle boot
    ],
    dtype="float32",
)
