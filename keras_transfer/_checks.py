"""Input checks shared by the public entry points."""

import keras
import numpy as np


def require_finite(values, argument):
    """Raises a ValueError naming `argument` if `values` hold NaN or inf; returns them unchanged."""
    array = np.asarray(values)
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(
            f"{argument} holds NaN or inf values ({bad} of {array.size}); expected finite numbers."
        )
    return values


def require_layer(value, argument):
    """Raises a TypeError naming `argument` unless `value` is a Keras model or layer; returns it."""
    if not isinstance(value, keras.layers.Layer):
        raise TypeError(f"{argument} must be a Keras model or layer; got {type(value).__name__}.")
    return value


def require_labels(y, n, name):
    """Returns `y` if it holds class indices (n,) or one-hot rows (n, classes), one per input."""
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(
            f"{name} has {len(y)} labels for {n} inputs; expected one label per input."
        )
    if y.ndim == 1:
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}.")
        if y.min() < 0:
            raise ValueError(f"{name} holds a negative class index ({y.min()}); expected >= 0.")
    elif y.ndim != 2:
        raise ValueError(
            f"{name} must be class indices (n,) or one-hot rows (n, classes), got shape {y.shape}."
        )
    return y
