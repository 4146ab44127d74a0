"""Discrepancies between source and target feature batches: MMD, CORAL, CMD.

Each is a plain function of two (batch, features) tensors returning a scalar;
`Discrepancy` wraps one for use where Keras wants a loss object.
"""

import keras
import tensorflow as tf


def _as_float(x, y):
    x_shape, y_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
    if None not in x_shape + y_shape and x_shape != y_shape:
        raise ValueError(
            f"x and y must have the same features per sample; got x {x_shape} and y {y_shape}."
        )
    x = tf.cast(tf.reshape(x, [tf.shape(x)[0], -1]), tf.float32)
    y = tf.cast(tf.reshape(y, [tf.shape(y)[0], -1]), tf.float32)
    return x, y


def _squared_distances(a, b):
    aa = tf.reduce_sum(a * a, axis=1, keepdims=True)
    bb = tf.reduce_sum(b * b, axis=1, keepdims=True)
    return tf.maximum(aa - 2.0 * tf.matmul(a, b, transpose_b=True) + tf.transpose(bb), 0.0)


def gaussian_bandwidths(x, y, kernel_mul=2.0, kernel_num=5):
    """Bandwidths sigma² around the mean pairwise squared distance of the pooled batch (DAN).

    Returns `kernel_num` values: mean · kernel_mul**k for k centred on 0.
    """
    x, y = _as_float(x, y)
    pooled = tf.concat([x, y], axis=0)
    n = tf.cast(tf.shape(pooled)[0], tf.float32)
    mean = tf.reduce_sum(_squared_distances(pooled, pooled)) / tf.maximum(n * n - n, 1.0)
    mean = tf.stop_gradient(tf.maximum(mean, 1e-12))
    offsets = [kernel_mul ** (k - kernel_num // 2) for k in range(kernel_num)]
    return [mean * offset for offset in offsets]


def _multi_kernel(a, b, bandwidths):
    distances = _squared_distances(a, b)
    return tf.add_n([tf.exp(-distances / bandwidth) for bandwidth in bandwidths])


def mmd(x, y, estimator="biased", kernel_mul=2.0, kernel_num=5):
    """Squared maximum mean discrepancy with a multi-kernel Gaussian (Long et al. 2015, DAN).

    k(a, b) = sum_j exp(-||a - b||² / sigma_j²), the sigma_j² spread by
    `kernel_mul` around the mean pairwise squared distance of the pooled batch.

    Args:
        x, y: (batch, features) source and target batches.
        estimator: "biased" (V-statistic: means over all pairs, >= 0, zero for
            identical batches), "unbiased" (U-statistic: diagonal terms left
            out; unbiased, may be negative) or "linear" (Gretton et al. 2012's
            linear-time estimate over consecutive pairs, for large batches; x
            and y need the same even batch size).
        kernel_mul, kernel_num: the bandwidth ladder.

    Returns:
        A scalar tensor.

    Example:
    >>> x = tf.random.stateless_normal([64, 3], seed=[0, 1])
    >>> float(mmd(x, x)) == 0.0
    True
    """
    x, y = _as_float(x, y)
    for name, batch in (("x", x), ("y", y)):
        if batch.shape[0] is not None and batch.shape[0] < 2:
            raise ValueError(f"mmd needs at least 2 samples in {name}; got {batch.shape[0]}.")
    bandwidths = gaussian_bandwidths(x, y, kernel_mul, kernel_num)
    if estimator == "linear":
        half = tf.shape(x)[0] // 2
        x1, x2, y1, y2 = x[:half], x[half : 2 * half], y[:half], y[half : 2 * half]

        def pairwise(a, b):
            d = tf.reduce_sum(tf.square(a - b), axis=1)
            return tf.add_n([tf.exp(-d / bandwidth) for bandwidth in bandwidths])

        return tf.reduce_mean(
            pairwise(x1, x2) + pairwise(y1, y2) - pairwise(x1, y2) - pairwise(x2, y1)
        )
    kxx, kyy, kxy = (
        _multi_kernel(x, x, bandwidths),
        _multi_kernel(y, y, bandwidths),
        _multi_kernel(x, y, bandwidths),
    )
    if estimator == "biased":
        return tf.reduce_mean(kxx) + tf.reduce_mean(kyy) - 2.0 * tf.reduce_mean(kxy)
    if estimator == "unbiased":
        m = tf.cast(tf.shape(x)[0], tf.float32)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        within_x = (tf.reduce_sum(kxx) - tf.linalg.trace(kxx)) / (m * (m - 1.0))
        within_y = (tf.reduce_sum(kyy) - tf.linalg.trace(kyy)) / (n * (n - 1.0))
        return within_x + within_y - 2.0 * tf.reduce_mean(kxy)
    raise ValueError(f"estimator must be 'biased', 'unbiased' or 'linear'; got {estimator!r}.")


def coral(x, y):
    """Deep CORAL (Sun & Saenko 2016): ||C_x − C_y||²_F / (4 d²), C the feature covariances.

    Args:
        x, y: (batch, d) source and target batches.

    Returns:
        A scalar tensor, zero for batches with equal covariances.

    Example:
    >>> x = tf.random.stateless_normal([64, 3], seed=[0, 1])
    >>> float(coral(x, x + 5.0)) < 1e-9  # a shift of the mean does not change covariances
    True
    """
    x, y = _as_float(x, y)

    def covariance(a):
        n = tf.cast(tf.shape(a)[0], tf.float32)
        centred = a - tf.reduce_mean(a, axis=0, keepdims=True)
        return tf.matmul(centred, centred, transpose_a=True) / tf.maximum(n - 1.0, 1.0)

    d = tf.cast(tf.shape(x)[1], tf.float32)
    return tf.reduce_sum(tf.square(covariance(x) - covariance(y))) / (4.0 * d * d)


def cmd(x, y, k=5, bounds=None):
    """Central moment discrepancy (Zellinger et al. 2017), moments 1 to k.

    CMD = ||E x − E y|| / |b − a| + sum_{j=2..k} ||c_j(x) − c_j(y)|| / |b − a|^j,
    c_j the j-th central moments per feature; [a, b] bounds the features. The
    paper's features lie in [0, 1] (a sigmoid); ReLU features have no bound, and
    raw 5th moments of features reaching 5 outweigh any task loss (a weight-1
    run on digits fell to 14% at 1,500 steps). So by default [a, b] is the
    range of the pooled batch: the paper's CMD of the features rescaled to
    [0, 1]. The range takes part in the gradient, so CMD does not change when
    both batches are scaled and gives the features no reason to shrink (held
    constant, it drove a ReLU network's features to zero).

    Args:
        x, y: (batch, features) source and target batches.
        k: the highest moment order (>= 1).
        bounds: (a, b), the interval the features lie in, or None for the
            pooled batch's range.

    Returns:
        A scalar tensor, zero for identical batches.

    Example:
    >>> x = tf.random.stateless_uniform([64, 3], seed=[0, 1])
    >>> float(cmd(x, x))
    0.0
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1; got {k}.")
    if bounds is not None and not float(bounds[1]) > float(bounds[0]):
        raise ValueError(f"bounds must be (a, b) with b > a, or None; got {bounds}.")
    x, y = _as_float(x, y)
    if bounds is None:
        pooled = tf.concat([x, y], axis=0)
        span = tf.maximum(tf.reduce_max(pooled) - tf.reduce_min(pooled), 1e-12)
    else:
        span = float(bounds[1]) - float(bounds[0])
    mean_x, mean_y = tf.reduce_mean(x, axis=0), tf.reduce_mean(y, axis=0)
    total = tf.norm(mean_x - mean_y) / span
    centred_x, centred_y = x - mean_x, y - mean_y
    for order in range(2, int(k) + 1):
        moment_x = tf.reduce_mean(centred_x**order, axis=0)
        moment_y = tf.reduce_mean(centred_y**order, axis=0)
        total += tf.norm(moment_x - moment_y) / span**order
    return total


DISCREPANCIES = {"mmd": mmd, "coral": coral, "cmd": cmd}


def get_discrepancy(discrepancy):
    """A discrepancy function from a name in `DISCREPANCIES` or a callable(x, y) -> scalar."""
    if callable(discrepancy):
        return discrepancy
    if discrepancy in DISCREPANCIES:
        return DISCREPANCIES[discrepancy]
    raise ValueError(
        f"discrepancy must be one of {sorted(DISCREPANCIES)} or a callable; got {discrepancy!r}."
    )


@keras.saving.register_keras_serializable(package="keras_transfer")
class Discrepancy(keras.losses.Loss):
    """A Keras loss whose (y_true, y_pred) are the source and target feature batches.

    Args:
        discrepancy: "mmd", "coral" or "cmd".
        **options: keyword arguments of that function (e.g. estimator="unbiased").

    Example:
    >>> loss = Discrepancy("coral")
    >>> float(loss(tf.ones([4, 2]), tf.ones([4, 2])))
    0.0
    """

    def __init__(self, discrepancy="mmd", name=None, **options):
        super().__init__(name=name or f"{discrepancy}_loss", reduction="sum_over_batch_size")
        if discrepancy not in DISCREPANCIES:
            raise ValueError(
                f"discrepancy must be one of {sorted(DISCREPANCIES)}; got {discrepancy!r}."
            )
        self.discrepancy = discrepancy
        self.options = options

    def __call__(self, y_true, y_pred, sample_weight=None):
        return DISCREPANCIES[self.discrepancy](y_true, y_pred, **self.options)

    def call(self, y_true, y_pred):
        return DISCREPANCIES[self.discrepancy](y_true, y_pred, **self.options)

    def get_config(self):
        return {"discrepancy": self.discrepancy, "name": self.name, **self.options}
