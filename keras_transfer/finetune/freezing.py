"""Freezing and unfreezing: what trains, with BatchNorm kept in inference mode.

Keras fixes what trains when a training function is traced: a change of
`trainable` after `compile()` needs a new optimizer state and a new trace.
After `freeze`/`unfreeze` outside `fit()`, call `compile()` again (or
`refresh_training`), as the keras.io transfer-learning guide says.
"""

import keras

_BATCH_NORM = (keras.layers.BatchNormalization,)


def _leaves_with_state(model):
    """[(leaf layer, whether its weights train now)] in order, nested models opened up.

    A leaf trains only when it and every model around it are trainable.
    """

    def walk(container, parent_trainable):
        for layer in container.layers:
            trainable = parent_trainable and layer.trainable
            if isinstance(layer, keras.Model):
                yield from walk(layer, trainable)
            elif not isinstance(layer, keras.layers.InputLayer):
                yield layer, trainable

    return list(walk(model, model.trainable))


def leaf_layers(model):
    """The model's layers in order, nested models opened up (no InputLayer)."""
    return [layer for layer, _ in _leaves_with_state(model)]


def _weighted(layers):
    return [layer for layer in layers if layer.weights]


def _find(layers, key, argument):
    if isinstance(key, int):
        if not -len(layers) <= key < len(layers):
            raise ValueError(
                f"{argument}={key} is out of range: the model has {len(layers)} layers."
            )
        return key % len(layers)
    names = [layer.name for layer in layers]
    if key not in names:
        raise ValueError(f"{argument}={key!r} is not a layer of the model; layers: {names}.")
    return names.index(key)


def _effective_trainable(model):
    """{id(leaf): whether its weights train now}."""
    return {id(layer): trainable for layer, trainable in _leaves_with_state(model)}


def _also_train(model, layers):
    """Makes `layers` trainable too; every other leaf keeps its current state."""
    training = {i for i, on in _effective_trainable(model).items() if on}
    _set_trainable(model, training | {id(layer) for layer in layers})


def _set_trainable(model, trainable_ids):
    model.trainable = True  # opens every container; leaves are set one by one below
    for layer in leaf_layers(model):
        layer.trainable = id(layer) in trainable_ids
        _keep_lora_base_frozen(layer)


def _keep_lora_base_frozen(layer):
    """Keras' `trainable` setter marks every variable trainable, LoRA's frozen base kernel too."""
    if getattr(layer, "lora_enabled", False):
        for variable in layer.weights:
            if variable.name in ("kernel", "embeddings"):
                variable.trainable = False


def freeze(model, until=None):
    """Freezes the whole model, or its layers from the first up to and including `until`.

    Frozen layers get no gradient, and frozen BatchNormalization layers run in
    inference mode (Keras 3 semantics), so their statistics stay put.

    Args:
        model: a Keras model (nested models are opened up).
        until: None (freeze everything), or a layer name or index among
            `leaf_layers(model)`.

    Returns:
        The names of the layers frozen.

    Example:
    >>> freeze(model, until="block5_pool")  # doctest: +SKIP
    """
    leaves = leaf_layers(model)
    if until is None:
        model.trainable = False
        return [layer.name for layer in leaves]
    stop = _find(leaves, until, "until")
    state = _effective_trainable(model)
    frozen = {id(layer) for layer in leaves[: stop + 1]}
    _set_trainable(model, {i for i, on in state.items() if on and i not in frozen})
    return [layer.name for layer in leaves[: stop + 1]]


def unfreeze(model, top=None, from_layer=None, batch_norm="frozen"):
    """Makes more layers trainable, counting from the top; the rest keep their state.

    Args:
        model: a Keras model (nested models are opened up).
        top: unfreeze the last `top` layers that have weights.
        from_layer: or unfreeze every layer from this one (name or index) on.
        batch_norm: "frozen" (default) keeps BatchNormalization layers frozen,
            so they stay in inference mode with their statistics, as the keras.io
            fine-tuning guide advises; "train" unfreezes them too.

    Returns:
        The names of the layers made trainable.

    Example:
    >>> unfreeze(backbone, top=20)  # then compile again  # doctest: +SKIP
    """
    if (top is None) == (from_layer is None):
        raise ValueError("Pass exactly one of top= or from_layer=.")
    if batch_norm not in ("frozen", "train"):
        raise ValueError(f"batch_norm must be 'frozen' or 'train'; got {batch_norm!r}.")
    leaves = leaf_layers(model)
    if top is not None:
        weighted = _weighted(leaves)
        if not isinstance(top, int) or top < 0:
            raise ValueError(f"top must be a non-negative int; got {top!r}.")
        if top > len(weighted):
            raise ValueError(
                f"top={top} exceeds the {len(weighted)} layers with weights in {model.name!r}."
            )
        chosen = weighted[len(weighted) - top :]
    else:
        chosen = leaves[_find(leaves, from_layer, "from_layer") :]
    if batch_norm == "frozen":
        chosen = [layer for layer in chosen if not isinstance(layer, _BATCH_NORM)]
    _also_train(model, chosen)
    return [layer.name for layer in chosen]


def refresh_training(model):
    """Makes a change of `trainable` take effect in a compiled model, also inside `fit()`.

    The optimizer is replaced by a fresh one of the same configuration (its
    step count carried over, so schedules continue) built for the new set of
    trainable variables, and the training function is traced again. Moment
    estimates start afresh, as they do after `compile()`.

    Args:
        model: a compiled Keras model.

    Returns:
        The new optimizer.
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError(f"model {model.name!r} is not compiled: compile it before training.")
    old = model.optimizer
    new = old.__class__.from_config(old.get_config())
    new.iterations.assign(old.iterations)
    new.build(model.trainable_variables)
    model.optimizer = new
    model.make_train_function(force=True)
    return new
