"""What the teacher and the student look at: one augmented, optionally mixed view of each batch.

Beyer et al. 2022 ("a good teacher is patient and consistent") found that
distillation pays when both networks see the same view of an image (the same
crop, flip and mixup), and that a teacher run once on fixed images is the
variant that overfits. The Distiller applies `augment` and `mixup` once per
batch, before the teacher and the student. With `cache_teacher=True` it runs
the teacher once on `teacher_views` augmented copies of the data instead, and
each step draws from them, so the student still sees changing views at the
cost of a cached teacher.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_layer
from keras_transfer._checks import require_number

CACHE_KEY = "teacher"
LABELS_KEY = "labels"
LABELLED_KEY = "labelled"
WEIGHTS_KEY = "sample_weight"


def view_settings(augment, mixup, teacher_views, cache_teacher, input_shape=None):
    """The checked `(augment, mixup, teacher_views)` of a Distiller."""
    augment = None if augment is None else require_layer(augment, "augment")
    if augment is not None and input_shape and None not in input_shape:
        try:
            shape = tuple(augment.compute_output_shape((1,) + tuple(input_shape)))[1:]
        except Exception:  # a layer that cannot tell: it is seen at the first step
            shape = tuple(input_shape)
        if shape != tuple(input_shape):
            raise ValueError(
                f"augment must keep the inputs' shape {tuple(input_shape)}; it gives {shape}. "
                "Resize before the Distiller, or end augment with a Resizing layer back."
            )
    mixup = require_number(mixup, "mixup")
    if mixup and cache_teacher:
        raise ValueError(
            f"mixup={mixup} blends every batch anew, so the teacher must see each blend: "
            "use cache_teacher=False with mixup."
        )
    return augment, mixup, require_number(teacher_views, "teacher_views", 1, integer=True)


def mix_batch(x, concentration, seed_generator):
    """Mixup within a batch: each input blended with another one of the batch.

    Args:
        x: an input batch.
        concentration: a > 0 of the Beta(a, a) that draws each example's share.
        seed_generator: a `keras.random.SeedGenerator`.

    Returns:
        `(mixed, partner, share)`: the blended batch, the index of each example's
        partner and each example's own share in [0, 1], shape (batch,).
    """
    batch = tf.shape(x)[0]
    share = keras.random.beta((batch,), concentration, concentration, seed=seed_generator)
    share = tf.cast(share, x.dtype)
    partner = keras.random.shuffle(tf.range(batch), seed=seed_generator)
    shape = tf.concat([[batch], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    blend = tf.reshape(share, shape)
    return blend * x + (1.0 - blend) * tf.gather(x, partner), partner, share


def training_view(x, augment, mixup, seed_generator):
    """The batch both networks train on, and (partner, share) under mixup, else None."""
    if augment is not None:
        x = augment(x, training=True)
    if not mixup:
        return x, None
    x, partner, share = mix_batch(x, mixup, seed_generator)
    return x, (partner, share)


def blended_task_loss(loss_mean, labels, logits, weight, partner):
    """The labels' loss; under mixup each example's and its partner's, by their shares.

    Args:
        loss_mean: `(y, y_pred, sample_weight) -> mean loss over the batch`.
        labels, logits: the batch's labels and the student's outputs.
        weight: per-example weights or None.
        partner: None, or `(partner index, own share)` from `mix_batch`.
    """
    if partner is None:
        return loss_mean(labels, logits, weight)
    index, share = partner
    weight = tf.ones_like(share) if weight is None else tf.cast(weight, share.dtype)
    own = loss_mean(labels, logits, weight * share)
    other = loss_mean(tf.gather(labels, index), logits, tf.gather(weight, index) * (1.0 - share))
    return own + other


def labelled_weight(labelled, sample_weight):
    """Task-loss weights: the labelled mask scaled so the loss is a mean over labelled examples."""
    if labelled is None:
        return sample_weight
    labelled = tf.cast(labelled, tf.float32)
    weight = labelled * tf.cast(tf.shape(labelled)[0], tf.float32)
    weight /= tf.maximum(tf.reduce_sum(labelled), 1.0)
    return weight if sample_weight is None else weight * tf.cast(sample_weight, tf.float32)


def with_unlabelled(x, y, unlabelled):
    """`x` and `unlabelled` as one array, and y as {labels, labelled mask} for the step."""
    for value, argument in ((x, "x"), (unlabelled, "unlabelled")):
        if not isinstance(value, np.ndarray):
            raise ValueError(
                f"fit(unlabelled=...) needs {argument} as a numpy array, got "
                f"{type(value).__name__}. With a dataset, mark the unlabelled examples yourself "
                "and train with alpha=0, or label them."
            )
    if unlabelled.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"unlabelled must hold inputs shaped like x's {x.shape[1:]}, got "
            f"{unlabelled.shape[1:]}."
        )
    x = np.concatenate([x, unlabelled.astype(x.dtype)])
    if y is None:  # alpha=0: the teacher alone teaches, on both
        return x, None
    y = np.asarray(y)
    padding = np.zeros((len(unlabelled),) + y.shape[1:], y.dtype)
    labelled = np.ones(len(x), "float32")
    labelled[len(x) - len(unlabelled) :] = 0.0
    return x, {
        LABELS_KEY: np.concatenate([y, padding]),
        LABELLED_KEY: labelled,
    }


def with_weights_in_targets(y, sample_weight):
    """y as the step's dict of targets, holding `sample_weight` too (Keras would copy weights
    passed beside a dict y onto each of its entries)."""
    targets = dict(y) if isinstance(y, dict) else {} if y is None else {LABELS_KEY: y}
    if sample_weight is not None:
        targets[WEIGHTS_KEY] = np.asarray(sample_weight, "float32")
    return targets or None


def split_targets(y, sample_weight=None):
    """(labels, cached teacher outputs or None, labelled mask or None, sample weights) of a
    step's y."""
    if isinstance(y, dict) and (CACHE_KEY in y or LABELS_KEY in y or WEIGHTS_KEY in y):
        teacher = y.get(CACHE_KEY)
        teacher = None if teacher is None else list(teacher)
        weights = y.get(WEIGHTS_KEY, sample_weight)
        return y.get(LABELS_KEY), teacher, y.get(LABELLED_KEY), weights
    return y, None, None, sample_weight


MAX_VIEW_BYTES = 8 * 2**30


def augmented_views(augment, x, views, batch_size=256):
    """`views` augmented copies of `x`, stacked: (views * len(x), ...)."""
    if views * x.nbytes > MAX_VIEW_BYTES:
        raise ValueError(
            f"teacher_views={views} copies of x ({x.nbytes / 2**20:.0f} MiB) would take "
            f"{views * x.nbytes / 2**30:.1f} GiB, over {MAX_VIEW_BYTES // 2**30} GiB: use fewer "
            "views, or cache_teacher=False (the teacher then runs on every augmented batch)."
        )
    copies = []
    for _ in range(views):
        copies.extend(
            keras.ops.convert_to_numpy(augment(x[start : start + batch_size], training=True))
            for start in range(0, len(x), batch_size)
        )
    return np.concatenate(copies).astype(x.dtype, copy=False)


def view_dataset(x, targets, batch_size, seed=None):
    """A shuffled, endless tf.data stream of (view, targets) batches."""
    return (
        tf.data.Dataset.from_tensor_slices((x, targets))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
