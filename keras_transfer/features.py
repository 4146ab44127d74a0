"""Feature extraction with an on-disk cache, and heads trained on the cached features."""

import hashlib
import json
import os
import warnings

import keras
import numpy as np

from keras_transfer._files import atomic_file


def cache_key(backbone, x):
    """A hex digest of the backbone (architecture and weights) and of the inputs.

    Args:
        backbone: a Keras model.
        x: the input array.

    Returns:
        A 64-character hex string; any change of weights or data changes it.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(backbone.get_config(), sort_keys=True, default=str).encode())
    for weight in backbone.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(weight.path.encode())
        digest.update(value.tobytes())
    digest.update(str((x.shape, x.dtype.str)).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


def extract_features(backbone, x, cache_dir=None, batch_size=256):
    """Runs the backbone over `x` once; with `cache_dir`, reuses the result on later calls.

    The cache entry is named by `cache_key(backbone, x)` and holds that key and
    a checksum of the features, verified on every read, so a changed backbone,
    changed data or a file put there by someone else never gives features (a
    warning says so and they are computed afresh). Entries are written to a
    temporary name and renamed, and read without pickle.

    Args:
        backbone: a Keras model mapping inputs to features.
        x: inputs, a numpy array (not augmented: features are computed once).
        cache_dir: folder for `features-<key>.npz` entries, created if missing;
            None computes without caching.
        batch_size: batch size of the pass.

    Returns:
        A float32 numpy array of features, one row per input.

    Example:
    >>> features = extract_features(backbone, x_train, cache_dir="cache/")  # doctest: +SKIP
    >>> head.fit(features, y_train, epochs=20)  # doctest: +SKIP
    """
    if not isinstance(backbone, keras.Model):
        raise TypeError(f"backbone must be a keras.Model; got {type(backbone).__name__}.")
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"x is empty (shape {x.shape}); pass at least one input.")
    expected = tuple(backbone.inputs[0].shape[1:]) if backbone.inputs else None
    if expected is not None and (
        len(expected) != x.ndim - 1
        or any(e is not None and e != s for e, s in zip(expected, x.shape[1:]))
    ):
        raise ValueError(
            f"x has samples of shape {x.shape[1:]}; backbone {backbone.name!r} takes {expected}."
        )
    if cache_dir is None:
        return _compute(backbone, x, batch_size)
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise NotADirectoryError(
            f"cache_dir must be a folder (created if missing); {os.fspath(cache_dir)!r} is a file."
        )
    key = cache_key(backbone, x)
    path = os.path.join(os.fspath(cache_dir), f"features-{key[:32]}.npz")
    if os.path.lexists(path):
        cached, problem = _read_entry(path, key, len(x))
        if cached is not None:
            return cached
        warnings.warn(
            f"feature cache entry {path!r} {problem}; computing the features afresh and "
            "leaving the file as it is (delete it to cache again).",
            stacklevel=2,
        )
        return _compute(backbone, x, batch_size)
    features = _compute(backbone, x, batch_size)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_file(path, kind="npz") as temporary, open(temporary, "wb") as f:
        np.savez(f, features=features, key=np.array(key), checksum=np.array(_checksum(features)))
    return features


def _checksum(features):
    return hashlib.sha256(np.ascontiguousarray(features).tobytes()).hexdigest()


def _read_entry(path, key, rows):
    """(features, None) for a cache entry that holds `key` and intact features, else (None, why)."""
    try:
        with np.load(path, allow_pickle=False) as entry:
            stored_key, checksum, features = (
                str(entry["key"]),
                str(entry["checksum"]),
                entry["features"],
            )
    except (OSError, ValueError, KeyError, EOFError) as error:
        return None, f"is not a cache entry keras-transfer wrote ({type(error).__name__})"
    if stored_key != key:
        return None, "was written for another backbone or other inputs"
    if features.dtype != np.float32 or features.ndim < 1 or len(features) != rows:
        return None, f"holds features of shape {features.shape} for {rows} inputs"
    if _checksum(features) != checksum:
        return None, "does not match its checksum"
    return features, None


def _compute(backbone, x, batch_size):
    return np.asarray(backbone.predict(x, batch_size=batch_size, verbose=0), dtype="float32")


def stack(backbone, head, name=None):
    """The deployable model: inputs -> backbone -> head, sharing both models' weights.

    Args:
        backbone: the feature extractor the features came from.
        head: a model trained on those features.
        name: the new model's name.

    Returns:
        A functional `keras.Model`, ready to evaluate, save or export.

    Example:
    >>> classifier = stack(backbone, head)  # doctest: +SKIP
    """
    inputs = keras.Input(tuple(backbone.inputs[0].shape[1:]), name="inputs")
    return keras.Model(
        inputs, head(backbone(inputs)), name=name or f"{backbone.name}_with_{head.name}"
    )
