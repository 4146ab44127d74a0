"""Batches for unsupervised domain adaptation: labelled source paired with unlabelled target."""

import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_finite
from keras_transfer._checks import require_labels
from keras_transfer._checks import require_number
from keras_transfer._checks import warn_about_images


def domain_pairs(source, target, batch_size=32, seed=None, shuffle=True):
    """Pairs labelled source batches with unlabelled target batches for adaptation.

    Each epoch has `ceil(max(n_source, n_target) / batch_size)` steps, every batch
    full: the longer domain is seen whole, the shorter one is repeated. With a
    seed, the sequence of batches (over all epochs) is the same on every run.

    Args:
        source: `(x_source, y_source)`, labels as class indices or one-hot rows.
        target: `x_target`, the unlabelled target inputs (no labels).
        batch_size: examples per domain in each batch.
        seed: shuffle seed, or None for a different order each run.
        shuffle: whether to shuffle each domain every epoch.

    Returns:
        A `tf.data.Dataset` of `((x_source, y_source), x_target)` batches.

    Example:
    >>> xs, ys = np.zeros((100, 8, 8, 1), "float32"), np.zeros(100, "int32")
    >>> pairs = domain_pairs((xs, ys), xs[::-1], batch_size=64, seed=0)
    >>> (x_s, y_s), x_t = next(iter(pairs))
    >>> tuple(x_t.shape)
    (64, 8, 8, 1)
    """
    if not (isinstance(source, (tuple, list)) and len(source) == 2):
        raise ValueError("source must be a pair (x_source, y_source) of arrays.")
    if isinstance(target, (tuple, list)):
        raise ValueError(
            "target must be the unlabelled target inputs x_target alone; got a "
            f"{type(target).__name__} of {len(target)} items. Target labels are not "
            "used for unsupervised adaptation: keep them for evaluation."
        )
    require_number(batch_size, "batch_size", minimum=1, integer=True)
    x_source, y_source = (np.asarray(a) for a in source)
    x_target = np.asarray(target)
    for name, x in (("source", x_source), ("target", x_target)):
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"{name} inputs are empty; expected at least one example.")
    if x_source.shape[1:] != x_target.shape[1:]:
        raise ValueError(
            f"source and target inputs must share a shape past the batch axis: source "
            f"{x_source.shape[1:]}, target {x_target.shape[1:]}. resize_images() or "
            "to_common_shape() can bring image domains to one shape."
        )
    y_source = require_labels(y_source, len(x_source), "source labels")
    for name, x in (("source inputs", x_source), ("target inputs", x_target)):
        warn_about_images(x, name)
    require_finite(x_source, "source inputs")
    require_finite(x_target, "target inputs")
    steps = -(-max(len(x_source), len(x_target)) // batch_size)
    source_stream = _endless(
        tf.data.Dataset.from_tensor_slices((x_source, y_source)), len(x_source), shuffle, seed
    )
    target_seed = None if seed is None else seed + 1
    target_stream = _endless(
        tf.data.Dataset.from_tensor_slices(x_target), len(x_target), shuffle, target_seed
    )
    pairs = tf.data.Dataset.zip((source_stream, target_stream))
    return pairs.batch(batch_size, drop_remainder=True).take(steps).prefetch(tf.data.AUTOTUNE)


def _endless(dataset, size, shuffle, seed):
    if shuffle:
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return dataset.repeat()
