"""HubLayer: a TF-Hub module or TF2 SavedModel as a trainable Keras 3 layer.

`tensorflow_hub.KerasLayer` is a Keras 2 layer that Keras 3 models reject
(tensorflow/hub issue 903). HubLayer loads the module with
`tf.saved_model.load`, tracks the module's own variables as Keras variables
and calls the restored function, so `fit()` trains the module itself.
"""

import os

import keras
import tensorflow as tf

_URL_PREFIXES = ("http://", "https://", "gs://")


def resolve_handle(handle):
    """Turns a TF-Hub handle, URL or local folder into a local SavedModel folder.

    Args:
        handle: a local SavedModel folder, a tfhub.dev / Kaggle URL, or a `gs://`
            path. URLs are downloaded (and cached) by `tensorflow_hub.resolve`.

    Returns:
        The path of a folder holding `saved_model.pb`.

    Example:
    >>> handle = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
    >>> resolve_handle(handle)  # doctest: +SKIP
    """
    if not isinstance(handle, (str, os.PathLike)):
        raise TypeError(
            f"handle must be a folder path or a TF-Hub URL; got {type(handle).__name__}."
        )
    handle = os.fspath(handle)
    if handle.startswith(_URL_PREFIXES):
        import tensorflow_hub

        handle = tensorflow_hub.resolve(handle)
    if not os.path.isdir(handle):
        raise FileNotFoundError(f"handle {handle!r} is neither a folder nor a TF-Hub URL.")
    if not os.path.isfile(os.path.join(handle, "saved_model.pb")):
        raise FileNotFoundError(
            f"handle {handle!r} is a folder without saved_model.pb: not a SavedModel."
        )
    return handle


def _load_module(path, handle):
    try:
        return tf.saved_model.load(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"handle {handle!r} is not a loadable TF2 SavedModel: {error}") from error


def _endpoint(loaded, signature, handle):
    """The function to call: a named signature, else `__call__`, else `serve`."""
    if signature is not None:
        if signature not in loaded.signatures:
            raise ValueError(
                f"signature={signature!r} is not in the SavedModel at {handle!r}; "
                f"it has {sorted(loaded.signatures)}."
            )
        return loaded.signatures[signature]
    for name in ("__call__", "serve"):
        function = getattr(loaded, name, None)
        if function is not None and hasattr(function, "concrete_functions"):
            return function
    if "serving_default" in loaded.signatures:
        return loaded.signatures["serving_default"]
    raise ValueError(
        f"The SavedModel at {handle!r} has no __call__, no 'serve' endpoint and no "
        "'serving_default' signature; pass signature= one of "
        f"{sorted(loaded.signatures)}."
    )


def _concrete_functions(function):
    if hasattr(function, "concrete_functions"):
        return list(function.concrete_functions)
    return [function]


def _takes_training_argument(function):
    """Whether a restored function was saved with a `training` argument (TF-Hub reusable API)."""
    for concrete in _concrete_functions(function):
        args, kwargs = concrete.structured_input_signature
        if "training" in kwargs or any(isinstance(a, bool) for a in args[1:]):
            return True
    return False


def _used_variables(function):
    """The variables a restored function reads, trainable ones first, each once."""
    seen, trainable, frozen = set(), [], []
    for concrete in _concrete_functions(function):
        for variable in concrete.variables:
            if id(variable) in seen:
                continue
            seen.add(id(variable))
            (trainable if variable.trainable else frozen).append(variable)
    return trainable + frozen


def _keras_name(variable):
    return variable.name.split(":")[0].replace("/", "_")


def _wrap_variable(variable):
    """A Keras variable whose storage IS `variable`, so updates reach the module.

    `keras.Variable(initializer=tf_variable)` would copy the value; the restored
    function would then never see the training updates. Keras' TensorFlow
    Variable keeps its storage in `_value`; pointing it at the module's variable
    is the one private touch here, guarded by tests that train through it.
    """
    wrapped = keras.Variable(
        initializer=tf.zeros(variable.shape, variable.dtype),
        trainable=variable.trainable,
        dtype=variable.dtype,
        name=_keras_name(variable),
    )
    wrapped._value = variable
    return wrapped


@keras.saving.register_keras_serializable(package="keras_transfer")
class HubLayer(keras.layers.Layer):
    """A TF-Hub module or TF2 SavedModel as a Keras 3 layer that can be fine-tuned.

    The module's own variables become the layer's weights: with
    `trainable=True`, `fit()` updates them and `.keras` files store them. A
    saved model records the handle; loading it loads the module again, then
    the saved weights. Like Keras' `TFSMLayer`, loading a `.keras` file that
    holds a HubLayer runs graph code from the handle, so it needs
    `safe_mode=False` (trust the handle first).

    Args:
        handle: a local SavedModel folder or a TF-Hub URL (see `resolve_handle`).
        trainable: whether `fit()` trains the module's variables.
        signature: a signature name to call (e.g. "serving_default"); default:
            the module's `__call__` (TF-Hub reusable SavedModels), else the
            `serve` endpoint of `model.export()`.
        output_key: which output to return when the function returns a dict.
        training_mode: pass `training=True` to the module during `fit()` (its
            BatchNorm statistics then update and its dropout is on). Default
            False: the module runs in inference mode, the keras.io fine-tuning
            rule. Needs a module saved with a `training` argument.
        arguments: extra keyword arguments for every call of the module.

    Example:
    >>> layer = HubLayer("export/feature_extractor", trainable=True)  # doctest: +SKIP
    >>> model = keras.Sequential([keras.Input((28, 28, 1)), layer, keras.layers.Dense(10)])
    ... # doctest: +SKIP
    """

    def __init__(
        self,
        handle,
        trainable=False,
        signature=None,
        output_key=None,
        training_mode=False,
        arguments=None,
        **kwargs,
    ):
        super().__init__(trainable=trainable, **kwargs)
        self.handle = os.fspath(handle) if isinstance(handle, os.PathLike) else handle
        self.signature = signature
        self.output_key = output_key
        self.training_mode = bool(training_mode)
        self.arguments = dict(arguments or {})
        self._module = _load_module(resolve_handle(self.handle), self.handle)
        self._function = _endpoint(self._module, signature, self.handle)
        self._has_training_argument = signature is None and _takes_training_argument(self._function)
        if self.training_mode and not self._has_training_argument:
            raise ValueError(
                f"training_mode=True needs a module saved with a `training` argument; "
                f"the one at {self.handle!r} has none."
            )
        for variable in _used_variables(self._function):
            self._track_variable(_wrap_variable(variable))
        self.built = True

    def call(self, inputs, training=False):
        kwargs = dict(self.arguments)
        if self._has_training_argument:
            kwargs["training"] = bool(training and self.trainable and self.training_mode)
        if isinstance(inputs, dict):  # a signature with named inputs
            outputs = self._function(**inputs, **kwargs)
        else:
            outputs = self._function(inputs, **kwargs)
        if self.trainable and training:
            for loss in getattr(self._module, "regularization_losses", []):
                self.add_loss(loss())
        return self._pick_output(outputs)

    def _pick_output(self, outputs):
        if not isinstance(outputs, dict):
            if self.output_key is not None:
                raise ValueError(
                    f"output_key={self.output_key!r} given, but the module returns a single tensor."
                )
            return outputs
        if self.output_key is not None:
            if self.output_key not in outputs:
                raise ValueError(
                    f"output_key={self.output_key!r} is not an output; outputs: {sorted(outputs)}."
                )
            return outputs[self.output_key]
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        raise ValueError(f"The module returns {sorted(outputs)}; pass output_key= one of them.")

    def get_config(self):
        config = super().get_config()
        config.update(
            handle=self.handle,
            signature=self.signature,
            output_key=self.output_key,
            training_mode=self.training_mode,
            arguments=self.arguments,
        )
        return config

    @classmethod
    def from_config(cls, config):
        if _in_safe_mode():
            raise ValueError(
                f"Loading a HubLayer runs graph code from {config.get('handle')!r}; Keras safe "
                "mode refuses it. If you trust that module, load with safe_mode=False."
            )
        return cls(**config)


def _in_safe_mode():
    """True inside `keras.saving.load_model(..., safe_mode=True)` (the default).

    Keras has no public getter for its safe-mode state, so this asks Keras'
    own TFSMLayer, which refuses to deserialize in safe mode before it
    touches its (here nonexistent) path.
    """
    probe = {
        "filepath": os.path.join(os.sep, "nonexistent", "keras_transfer_probe"),
        "call_endpoint": "serve",
    }
    try:
        keras.layers.TFSMLayer.from_config(probe)
    except ValueError as error:
        if "safe_mode" in str(error):
            return True
    except Exception:  # noqa: BLE001 - unsafe mode: TFSMLayer tried to load the path
        return False
    return False
