"""Teachers from files (a `.keras` file, a SavedModel folder, a TF-Hub URL) and the cache of their
outputs.
"""

import os
import zlib

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_batched
from keras_transfer._checks import require_keras_archive
from keras_transfer._checks import require_label_range
from keras_transfer._checks import warn_about_images
from keras_transfer.distill.views import CACHE_KEY
from keras_transfer.distill.views import LABELS_KEY
from keras_transfer.distill.views import augmented_views
from keras_transfer.distill.views import view_dataset
from keras_transfer.distill.views import with_unlabelled
from keras_transfer.distill.views import with_weights_in_targets


def _checksum(arrays):
    value = 0
    for array in arrays:
        value = zlib.crc32(np.ascontiguousarray(array).view(np.uint8), value)
    return value


def load_teacher(path, student):
    path = os.fspath(path)
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"teacher file not found: {path!r}.")
        require_keras_archive(path, "teacher")
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    return saved_model_teacher(path, input_shape=_input_shape(student))


def saved_model_teacher(handle, input_shape=None):
    """A frozen Keras model serving a TF2 SavedModel folder or TF-Hub module, for use as a teacher.

    The module is called through `HubLayer`: its `__call__` (TF-Hub reusable
    SavedModels), else the `serve` endpoint that `model.export()` writes, else
    the `serving_default` signature with a single output.

    Args:
        handle: the SavedModel folder or a TF-Hub URL.
        input_shape: needed only when the module's signature leaves it open.

    Returns:
        A `keras.Model` with a known input and output shape, so the Distiller
        checks it against the student before training.

    Example:
    >>> teacher = saved_model_teacher("export/teacher_saved_model")  # doctest: +SKIP
    """
    from keras_transfer.backbones import load_backbone

    path = os.fspath(handle)
    if not path.startswith(("http://", "https://", "gs://")) and not os.path.isfile(
        os.path.join(path, "saved_model.pb")
    ):
        raise FileNotFoundError(
            "teacher must be a .keras file, a SavedModel folder with saved_model.pb or a "
            f"TF-Hub URL; got {path!r}."
        )
    return load_backbone(path, input_shape=input_shape, trainable=False)


def _input_shape(model):
    try:
        return tuple(model.inputs[0].shape[1:])
    except (AttributeError, ValueError, IndexError, TypeError):
        return None


class TeacherCache:
    """The teacher's outputs on one input array, kept while the array and the teacher are unchanged.

    The key is the contents of `x` and of the teacher's weights, so new
    inputs or a changed teacher are computed afresh.

    Args:
        forward: the function from an input batch to the list of teacher outputs.
        teacher: the teacher model, whose weights are part of the key.
    """

    def __init__(self, forward, teacher):
        self.forward = forward
        self.teacher = teacher
        self._entry = None

    def outputs(self, x, batch_size=256):
        """The list of teacher outputs on `x`, as numpy arrays."""
        x = np.asarray(x)
        key = (x.shape, x.dtype.str, _checksum([x] + self.teacher.get_weights()))
        if self._entry is not None and self._entry[0] == key:
            return self._entry[1]
        forward = tf.function(self.forward)
        pieces = [
            [o.numpy() for o in forward(tf.convert_to_tensor(x[start : start + batch_size]))]
            for start in range(0, len(x), batch_size)
        ]
        outputs = [np.concatenate(parts) for parts in zip(*pieces)]
        self._entry = (key, outputs)
        return outputs


def _with_teacher_outputs(distiller, x, y, argument):
    """(x, {"teacher": cached outputs, "labels": y}) for a Distiller with cache_teacher=True."""
    if not isinstance(x, np.ndarray) and not tf.is_tensor(x):
        raise ValueError(
            f"cache_teacher=True needs {argument} as an array (the same inputs every epoch), "
            f"got {type(x).__name__}. For streamed data use cache_teacher=False."
        )
    targets = dict(y) if isinstance(y, dict) else {} if y is None else {LABELS_KEY: y}
    targets[CACHE_KEY] = distiller.teacher_targets(x)
    return x, targets


class CachedTeacherFit:
    """The Distiller's `fit`: unlabelled data beside the labelled, and the teacher cache.

    With `cache_teacher=True` the teacher's outputs are computed once and passed
    in y; with `augment` as well, on `teacher_views` augmented copies of x,
    from which each step draws its batch. The host model sets `cache_teacher`,
    `augment`, `teacher_views` and `_cache` (a `TeacherCache`) and reads y
    through `views.split_targets`.
    """

    def fit(self, x=None, y=None, validation_data=None, unlabelled=None, **kwargs):
        """`keras.Model.fit`, plus unlabelled inputs the teacher labels.

        Args:
            x, y, validation_data, **kwargs: as `keras.Model.fit`.
            unlabelled: optional array of inputs without labels, shaped like
                `x` (arrays only): shuffled in with `x`, they take the
                distillation term alone; an epoch covers both.

        Returns:
            The `History`.
        """
        require_label_range(y, self.output_classes(), "y", getattr(self, "task_loss", None))
        require_batched(x, self.student, "x")
        warn_about_images(x, "x", self.student)
        if unlabelled is not None:
            warn_about_images(unlabelled, "unlabelled", self.student)
            x, y = with_unlabelled(x, y, unlabelled)
            if kwargs.get("sample_weight") is not None:  # the unlabelled weigh 1 in distillation
                weights = np.asarray(kwargs["sample_weight"], "float32")
                kwargs["sample_weight"] = np.concatenate(
                    [weights, np.ones(len(x) - len(weights), "float32")]
                )
        if self.cache_teacher or isinstance(y, dict):
            y = with_weights_in_targets(y, kwargs.pop("sample_weight", None))
        if self.cache_teacher and self.augment is not None:
            return self._fit_on_cached_views(x, y, validation_data, kwargs)
        if self.cache_teacher:
            x, y = _with_teacher_outputs(self, x, y, "x")
        if self.cache_teacher and validation_data is not None:
            validation_data = _cached_validation(self, validation_data)
        return super().fit(x, y, validation_data=validation_data, **kwargs)

    def _fit_on_cached_views(self, x, y, validation_data, kwargs):
        if not isinstance(x, np.ndarray):
            raise ValueError(
                "cache_teacher=True with augment needs x as a numpy array (its augmented "
                f"views are made once), got {type(x).__name__}. For streamed data use "
                "cache_teacher=False: the teacher then sees each augmented batch."
            )
        if kwargs.get("validation_split"):
            raise ValueError(
                "cache_teacher=True with augment draws every batch from the cached views "
                f"itself; validation_split={kwargs['validation_split']!r} is not taken: pass "
                "validation_data."
            )
        kwargs.pop("shuffle", None)  # the views are drawn in a shuffled stream
        batch_size = kwargs.pop("batch_size", None) or 32
        steps_per_epoch = kwargs.pop("steps_per_epoch", None)
        views = augmented_views(self.augment, x, self.teacher_views)
        labels = y or {}  # fit has made y the step's dict of targets (or None)
        targets = {k: np.concatenate([v] * self.teacher_views) for k, v in labels.items()}
        targets[CACHE_KEY] = tuple(self.teacher_targets(views))
        data = view_dataset(views, targets, batch_size)
        if validation_data is not None:
            validation_data = _cached_validation(self, validation_data)
        return super().fit(
            data,
            validation_data=validation_data,
            steps_per_epoch=steps_per_epoch or -(-len(x) // batch_size),
            shuffle=False,  # the stream shuffles itself
            **kwargs,
        )

    def teacher_targets(self, x, batch_size=256):
        """The teacher's outputs on `x` (logits, then layer features), kept while `x` is unchanged.

        Args:
            x: an input array.
            batch_size: examples per teacher call.

        Returns:
            A list of numpy arrays.
        """
        return self._cache.outputs(x, batch_size)


def _cached_validation(distiller, validation_data):
    pair = (validation_data, None)
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        pair = validation_data
    return _with_teacher_outputs(distiller, *pair, "validation_data")
