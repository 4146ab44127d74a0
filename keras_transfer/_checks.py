"""Input checks shared by the public entry points."""

import warnings

import keras
import numpy as np

_MISSING = object()


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


def renamed_argument(given, old, new, value, default=_MISSING, owner=""):
    """The value of argument `new`, taking it from its old name `old` in `given` if passed there.

    The old keyword keeps working for one release, with a DeprecationWarning;
    passing both is an error.

    Args:
        given: the caller's `**kwargs`; `old` is removed from it.
        old, new: the old and the new keyword.
        value: what was passed as `new`.
        default: `new`'s default; a `value` other than it counts as passed.
        owner: the function or class, for the messages.

    Returns:
        `given[old]` if it was passed, else `value`.

    Example:
    >>> renamed_argument({"alpha": 0.3}, "alpha", "sp_weight", 0.01, 0.01, "l2_sp")
    0.3
    """
    if old not in given:
        return value
    old_value = given.pop(old)
    if value is not default and (default is _MISSING or value != default):
        raise TypeError(f"{owner} got both {new}= and its old name {old}=; pass {new}= only.")
    warnings.warn(
        f"{owner}: {old}= is now {new}=; the old name goes in the next release.",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value


def require_no_more_arguments(given, owner):
    """Raises the TypeError Python would for keywords left in `given` (after the renamed ones)."""
    if given:
        raise TypeError(f"{owner} got unexpected keyword arguments {sorted(given)}.")


def require_number(value, argument, minimum=0.0, above=False, maximum=None, integer=False):
    """Returns `value` as a float (an int with `integer`) if it is a finite number in range.

    Python and numpy numbers are accepted alike; booleans, NaN and inf are not.

    Args:
        value: the hyper-parameter.
        argument: its name, for the message.
        minimum: the smallest value allowed (None: no bound).
        above: `value` must exceed `minimum` rather than reach it.
        maximum: the largest value allowed (None: no bound).
        integer: `value` must be a whole number.

    Raises:
        ValueError: naming `argument`, what was expected and what came.

    Example:
    >>> require_number(np.float32(2.0), "temperature", above=True)
    2.0
    """
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    number = isinstance(value, kinds) and not isinstance(value, (bool, np.bool_))
    if not number or not np.isfinite(value):
        expected = "a whole number" if integer else "a finite number"
        raise ValueError(f"{argument} must be {expected}; got {value!r}.")
    too_low = minimum is not None and (value <= minimum if above else value < minimum)
    if too_low or (maximum is not None and value > maximum):
        low = "" if minimum is None else (f"> {minimum:g}" if above else f">= {minimum:g}")
        high = "" if maximum is None else f"<= {maximum:g}"
        raise ValueError(
            f"{argument} must be {' and '.join(b for b in (low, high) if b)}; got {value!r}."
        )
    return int(value) if integer else float(value)


# A model's config.json is a few hundred KB even for large networks; one that inflates past this
# is refused before Keras parses it (a small hostile archive can unpack to gigabytes).
MAX_KERAS_CONFIG_BYTES = 64 * 2**20


def require_keras_archive(path, argument):
    """Returns `path` if it is a `.keras` zip archive whose config is of a sane size.

    Raises:
        ValueError: naming `argument`: not a zip archive, no config.json, an entry
            pointing outside the archive, or a config inflating past `MAX_KERAS_CONFIG_BYTES`.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo("config.json").file_size
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{argument} {path!r} is not a valid .keras archive: {error}.") from error
    except KeyError:
        raise ValueError(f"{argument} {path!r} is not a .keras archive: no config.json.") from None
    escaping = [
        n for n in names if n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/")
    ]
    if escaping:
        raise ValueError(
            f"{argument} {path!r} holds an entry {escaping[0]!r} that points outside the "
            "archive; it is not loaded."
        )
    if size > MAX_KERAS_CONFIG_BYTES:
        raise ValueError(
            f"{argument} {path!r} holds a config of {size / 2**20:.0f} MiB, over the "
            f"{MAX_KERAS_CONFIG_BYTES // 2**20} MiB a model's config takes; it is not loaded."
        )
    return path


def require_label_range(y, classes, argument, loss=None):
    """Returns `y` if its class indices (or one-hot columns) fit a model with `classes` outputs.

    Arrays only (a dataset is checked by the loss at its first step); `classes` None skips.
    Float labels must be whole numbers; one-hot rows are refused under a sparse `loss`.
    """
    if classes is None or y is None or not isinstance(y, np.ndarray) or y.size == 0:
        return y
    if y.ndim == 1 and y.dtype.kind == "f" and not np.all(y == np.round(y)):
        fraction = y[np.flatnonzero(y != np.round(y))[0]]
        raise ValueError(
            f"{argument} must hold class indices; it holds {fraction:g}, not a whole number."
        )
    if y.ndim == 1 and y.dtype.kind in "iuf" and (y.min() < 0 or y.max() >= classes):
        raise ValueError(
            f"{argument} holds class indices {y.min():g} to {y.max():g}, but the model has "
            f"{classes} outputs (classes 0 to {classes - 1})."
        )
    if y.ndim == 2 and y.shape[1] not in (1, classes):
        raise ValueError(
            f"{argument} has {y.shape[1]} columns (one-hot?) for a model with {classes} outputs."
        )
    if y.ndim == 2 and y.shape[1] == classes > 1 and _is_sparse(loss):
        raise ValueError(
            f"{argument} holds one-hot rows {y.shape}, but the task loss "
            f"{type(loss).__name__} takes class indices: pass {argument}.argmax(-1), or a "
            "categorical loss (keras.losses.CategoricalCrossentropy(from_logits=True))."
        )
    return y


def require_batched(data, model, argument):
    """Returns `data` unless it is a tf.data.Dataset of single examples where `model` takes
    batches (elements one axis short of the model's input)."""
    import tensorflow as tf

    if not isinstance(data, tf.data.Dataset):
        return data
    try:
        rank = len(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return data
    first = tf.nest.flatten(data.element_spec)[0]
    if first.shape.rank is not None and first.shape.rank == rank - 1:
        raise ValueError(
            f"{argument} is a tf.data.Dataset of single examples (shaped {tuple(first.shape)}); "
            f"the model takes batches (rank {rank}): call .batch(batch_size) on it."
        )
    return data


def _is_sparse(loss):
    name = getattr(loss, "name", None) or getattr(loss, "__name__", "") or str(loss or "")
    return "sparse" in str(name).lower()


def warn_about_images(x, argument, model=None):
    """Warns when images (4-D inputs) look channels-first, or range past [0, 1] where `model`
    does not rescale them itself.

    keras-transfer's loaders give images in [0, 1]; 0-255 images fed to a network trained on
    [0, 1] train, distil or calibrate silently wrong (an int8 file calibrated on them agreed
    with its Keras model on 9% of images). The input may be intended, so this warns.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.size == 0:
        return
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3, 4) and x.shape[2] == x.shape[3]:
        import warnings

        warnings.warn(
            f"{argument} is shaped {x.shape}: channels first? Keras layers take channels last "
            f"(n, height, width, channels): np.moveaxis({argument}, 1, -1).",
            stacklevel=3,
        )
    if model is not None and any(
        type(layer).__name__ in ("Rescaling", "Normalization") for layer in model.layers[:3]
    ):
        return
    largest = float(np.max(x))
    if largest > 1.5:
        import warnings

        warnings.warn(
            f"{argument} holds images with values up to {largest:g}, not in [0, 1] as "
            "keras-transfer's loaders give them; if the model was trained on [0, 1], divide by "
            "255 (or start the model with keras.layers.Rescaling(1 / 255)).",
            stacklevel=3,
        )
