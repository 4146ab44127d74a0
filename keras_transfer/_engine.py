"""The engine check: keras-transfer runs on Keras 3 with the TensorFlow backend.

The check runs before `keras` is imported where it can, because importing Keras
with a backend whose package is missing (jax, torch) fails with an error that
does not say what keras-transfer needs.
"""

import json
import os

REQUIRED_BACKEND = "tensorflow"


def _configured_backend():
    """The backend Keras will pick, read the way Keras reads it, without importing it."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name, "the KERAS_BACKEND environment variable"
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    config_path = os.path.join(keras_home, "keras.json")
    try:
        with open(config_path) as f:
            name = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        return None, None
    return (name, config_path) if name else (None, None)


def _backend_error(name, where):
    return ImportError(
        f"keras-transfer needs Keras 3 with the TensorFlow backend, but Keras is set "
        f"to the {name!r} backend by {where}. Set KERAS_BACKEND=tensorflow "
        f"(e.g. `export KERAS_BACKEND=tensorflow`) before importing keras or "
        f"keras_transfer."
    )


def require_tensorflow_backend():
    """Raises ImportError unless Keras 3 runs on TensorFlow; returns the keras module."""
    name, where = _configured_backend()
    if name is not None and name != REQUIRED_BACKEND:
        raise _backend_error(name, where)
    import keras

    if not keras.__version__.startswith("3."):
        raise ImportError(
            f"keras-transfer needs Keras 3, found keras {keras.__version__}. "
            f"Install it with `pip install 'keras>=3.10,<4'`."
        )
    active = keras.backend.backend()
    if active != REQUIRED_BACKEND:
        raise _backend_error(active, "an earlier import of keras")
    return keras
