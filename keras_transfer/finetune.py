"""Fine-tuning tools: freezing, gradual unfreezing, layer-wise learning rates, L2-SP, LoRA.

Keras fixes what trains when a training function is traced: a change of
`trainable` after `compile()` needs a new optimizer state and a new trace.
`GradualUnfreezing` does both; after `freeze`/`unfreeze` outside `fit()`,
call `compile()` again as the keras.io transfer-learning guide says.
"""

import re

import keras
import numpy as np

from keras_transfer._training import require_one_machine

_BATCH_NORM = (keras.layers.BatchNormalization,)
_LORA_LAYERS = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding,
                keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


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
            raise ValueError(f"{argument}={key} is out of range: the model has {len(layers)} layers.")
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
            raise ValueError(f"top={top} exceeds the {len(weighted)} layers with weights in {model.name!r}.")
        chosen = weighted[len(weighted) - top:]
    else:
        chosen = leaves[_find(leaves, from_layer, "from_layer"):]
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


class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreezes `blocks_per_step` more blocks every `every` epochs, from the top down.

    Args:
        blocks: the blocks, bottom to top, each a layer name, a list of layer
            names, or a name prefix ending in "*" (e.g. "block5*"). Default:
            every frozen layer with weights of the model (or `target`),
            BatchNormalization layers left out while `batch_norm="frozen"`.
        every: epochs between two steps (the first step happens at epoch
            `every`).
        blocks_per_step: how many blocks each step unfreezes.
        target: the model whose layers are unfrozen (e.g. the backbone inside
            the model being fit). Default: the model being fit.
        batch_norm: as in `unfreeze`.

    Example:
    >>> model.fit(x, y, epochs=6, callbacks=[GradualUnfreezing(every=2)])  # doctest: +SKIP
    """

    def __init__(self, blocks=None, every=1, blocks_per_step=1, target=None, batch_norm="frozen"):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int; got {every!r}.")
        if not isinstance(blocks_per_step, int) or blocks_per_step < 1:
            raise ValueError(f"blocks_per_step must be a positive int; got {blocks_per_step!r}.")
        self.blocks = blocks
        self.every = every
        self.blocks_per_step = blocks_per_step
        self.target = target
        self.batch_norm = batch_norm
        self.unfrozen_at = {}
        self._pending = None

    def _plan(self, target):
        leaves = leaf_layers(target)
        if self.blocks is None:
            state = _effective_trainable(target)
            skip = _BATCH_NORM if self.batch_norm == "frozen" else ()
            return [[layer] for layer in _weighted(leaves) if not state[id(layer)] and not isinstance(layer, skip)]
        plan = []
        for block in self.blocks:
            names = block if isinstance(block, (list, tuple)) else [block]
            layers = []
            for name in names:
                if name.endswith("*"):
                    found = [layer for layer in leaves if layer.name.startswith(name[:-1])]
                else:
                    found = [layer for layer in leaves if layer.name == name]
                if not found:
                    raise ValueError(f"block {name!r} matches no layer of {target.name!r}.")
                layers.extend(found)
            plan.append(layers)
        return plan

    def on_train_begin(self, logs=None):
        target = self.target or self.model
        self._pending = self._plan(target)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0 or epoch % self.every or not self._pending:
            return
        target = self.target or self.model
        step, self._pending = self._pending[-self.blocks_per_step:], self._pending[:-self.blocks_per_step]
        layers = [layer for block in step for layer in block]
        if self.batch_norm == "frozen":
            layers = [layer for layer in layers if not isinstance(layer, _BATCH_NORM)]
        _also_train(target, layers)
        self.unfrozen_at[epoch] = [layer.name for layer in layers]
        refresh_training(self.model)


def layerwise_optimizer(model, optimizer, decay=0.5, blocks=None):
    """An optimizer whose learning rate shrinks by `decay` per block going down the model.

    Discriminative fine-tuning (Howard & Ruder 2018): the top block trains at
    the optimizer's learning rate, the one below at `decay` times it, and so
    on. Built on `keras.optimizers.MultiOptimizer`, so it compiles, saves and
    loads like any Keras optimizer.

    Args:
        model: the model to train (built).
        optimizer: a Keras optimizer with a float learning rate; copies of it
            drive each block.
        decay: factor in (0, 1] between consecutive blocks.
        blocks: the blocks bottom to top, each a list of layers or layer
            names. Default: each layer with weights is a block. Layers are
            matched by name, so names must be unique across nested models.

    Returns:
        A `keras.optimizers.MultiOptimizer`.

    Example:
    >>> model.compile(layerwise_optimizer(model, keras.optimizers.Adam(1e-3), decay=0.7), loss)  # doctest: +SKIP
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1]; got {decay!r}.")
    config = optimizer.get_config()
    if not isinstance(config.get("learning_rate"), (int, float)):
        raise ValueError("layerwise_optimizer needs an optimizer with a float learning_rate, not a schedule.")
    if blocks is None:
        blocks = [[layer] for layer in _weighted(leaf_layers(model))]
    else:
        by_name = {layer.name: layer for layer in leaf_layers(model)}
        blocks = [[by_name[n] if isinstance(n, str) else n for n in block] for block in blocks]
    names_by_factor = {}
    for depth, block in enumerate(reversed(blocks)):
        factor = decay**depth
        if factor != 1.0:
            names_by_factor.setdefault(factor, []).extend(layer.name for layer in block)
    # Patterns match by layer name, as variable paths lose their outer model's prefix when a
    # .keras file is loaded. One pattern per optimizer: an optimizer under several keys comes
    # back from a .keras file as several optimizers, and its saved state no longer fits.
    mapping = keras.optimizers.OptimizerMap(default_optimizer=optimizer)
    for factor, names in names_by_factor.items():
        pattern = "(.*/)?(" + "|".join(re.escape(name) for name in names) + ")/.+"
        mapping[pattern] = optimizer.__class__.from_config(
            {**config, "name": f"{config['name']}_x{factor:.3g}", "learning_rate": config["learning_rate"] * factor})
    return keras.optimizers.MultiOptimizer(mapping)


@keras.saving.register_keras_serializable(package="keras_transfer")
class StayNear(keras.regularizers.Regularizer):
    """The L2-SP penalty of one weight: strength/2 · ||w − w0||² (w0 = 0 gives plain L2).

    Args:
        strength: alpha (transferred weights) or beta (new weights).
        reference: the starting point w0, or None for zero.
    """

    def __init__(self, strength, reference=None):
        self.strength = float(strength)
        self.reference = None if reference is None else np.asarray(reference, dtype="float32")

    def __call__(self, weight):
        difference = weight if self.reference is None else weight - self.reference
        return 0.5 * self.strength * keras.ops.sum(keras.ops.square(difference))

    def get_config(self):
        return {"strength": self.strength,
                "reference": None if self.reference is None else self.reference.tolist()}


def l2_sp(model, transferred, alpha=0.01, beta=0.01):
    """Adds the L2-SP penalty (Li et al. 2018) to a model's training loss.

    alpha/2 · ||w − w_pretrained||² on the weights of `transferred` (their
    values now are the pretrained point) and beta/2 · ||w||² on every other
    weight of `model`. Frozen weights count once they are unfrozen
    (attach it before phase 2 or before `fine_tune`). The penalty rides on the
    variables' regularizers, so plain `fit()` and keras-transfer models include it via
    `model.losses`. It is a training-time term: a saved model does not keep it.

    Args:
        model: the model being fine-tuned.
        transferred: the pretrained part: a layer or model (e.g. the
            backbone), or a list of layers.
        alpha: strength of the pull towards the pretrained weights.
        beta: strength of the plain L2 on the new weights.

    Returns:
        A dict {"transferred": n, "new": m} of the variables penalised.

    Example:
    >>> l2_sp(model, backbone, alpha=0.1, beta=0.01)  # doctest: +SKIP
    """
    layers = transferred if isinstance(transferred, (list, tuple)) else [transferred]
    transferred_ids = {id(v) for layer in layers for v in layer.weights}
    if not transferred_ids:
        raise ValueError("transferred has no weights; pass the pretrained layers or backbone.")
    counts = {"transferred": 0, "new": 0}
    for variable in model.weights:
        # Frozen layers get their penalty too: Keras only evaluates the regularizers of
        # trainable weights, so it starts to count when `unfreeze` opens the layer.
        if id(variable) in transferred_ids:
            variable.regularizer = StayNear(alpha, keras.ops.convert_to_numpy(variable))
            counts["transferred"] += 1
        else:
            variable.regularizer = StayNear(beta)
            counts["new"] += 1
    return counts


def add_lora(model, rank, layers=None, lora_alpha=None):
    """Enables LoRA (Hu et al. 2021) on Dense/EinsumDense/Embedding/Conv layers via Keras' `enable_lora`.

    Each chosen layer becomes trainable, its kernel freezes and two
    rank-`rank` matrices train in its place (its bias trains too, as in
    Keras); the rest of the model keeps its trainable state, also through
    later `freeze`/`unfreeze` calls. Keras merges
    the low-rank update into the kernel when saving and exporting.

    Args:
        model: a built Keras model.
        rank: the LoRA rank (positive int).
        layers: names of the layers to adapt; default every Dense layer.
        lora_alpha: Keras' scaling (update · lora_alpha / rank); default rank.

    Returns:
        The names of the layers adapted.

    Example:
    >>> add_lora(model, rank=4, layers=["fc1", "fc2"])  # doctest: +SKIP
    """
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be a positive int; got {rank!r}.")
    leaves = leaf_layers(model)
    if layers is None:
        chosen = [layer for layer in leaves if isinstance(layer, keras.layers.Dense)]
    else:
        by_name = {layer.name: layer for layer in leaves}
        missing = [name for name in layers if name not in by_name]
        if missing:
            raise ValueError(f"layers {missing} are not in the model; layers: {sorted(by_name)}.")
        chosen = [by_name[name] for name in layers]
    for layer in chosen:
        if not isinstance(layer, _LORA_LAYERS):
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) does not support LoRA.")
    _also_train(model, chosen)
    for layer in chosen:
        layer.enable_lora(rank, lora_alpha=lora_alpha)
    return [layer.name for layer in chosen]


def fine_tune(backbone, head, train_data, validation_data=None, head_epochs=5, fine_tune_epochs=5,
              unfreeze_top=None, learning_rate=1e-3, fine_tune_learning_rate=1e-4, loss=None,
              metrics=("accuracy",), batch_size=32, batch_norm="frozen", verbose="auto"):
    """The two-phase recipe: train a new head on the frozen backbone, then unfreeze the top.

    Phase 1 freezes the backbone and fits the head at `learning_rate`; phase 2
    unfreezes the top `unfreeze_top` layers with weights (all by default;
    BatchNorm stays frozen unless `batch_norm="train"`), recompiles at
    `fine_tune_learning_rate` and fits on, continuing the epoch count.

    Args:
        backbone: a Keras model giving features (e.g. from `load_backbone`).
        head: a Keras model (or layer) mapping features to outputs.
        train_data: (x, y) arrays or a `tf.data.Dataset` of (x, y) batches.
        validation_data: optional, as in `fit`.
        head_epochs, fine_tune_epochs: epochs of the two phases.
        unfreeze_top: layers with weights to unfreeze in phase 2 (None: all).
        learning_rate, fine_tune_learning_rate: Adam learning rates.
        loss: default sparse categorical cross-entropy on logits.
        metrics: compiled metrics.
        batch_size: for array data.
        batch_norm: "frozen" or "train", as in `unfreeze`.
        verbose: as in `fit`.

    Returns:
        (model, {"head": History, "fine_tune": History}), `model` being
        inputs -> backbone -> head.

    Example:
    >>> model, histories = fine_tune(backbone, keras.layers.Dense(5), (x, y), head_epochs=10)  # doctest: +SKIP
    """
    from keras_transfer.features import stack

    for name, value in (("head_epochs", head_epochs), ("fine_tune_epochs", fine_tune_epochs)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int; got {value!r}.")
    if unfreeze_top is not None:
        available = len(_weighted(leaf_layers(backbone)))
        if unfreeze_top > available:
            raise ValueError(f"unfreeze_top={unfreeze_top} exceeds the {available} layers with weights in the backbone.")
    if not isinstance(head, keras.Model):
        head = keras.Sequential([keras.Input(tuple(backbone.outputs[0].shape[1:])), head], name="head")
    model = stack(backbone, head)
    require_one_machine(model.distribute_strategy, "fine_tune")
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if isinstance(train_data, tuple):
        fit_args = dict(x=train_data[0], y=train_data[1], batch_size=batch_size)
    else:
        fit_args = dict(x=train_data)
    fit_args.update(validation_data=validation_data, verbose=verbose)

    freeze(backbone)
    model.compile(keras.optimizers.Adam(learning_rate), loss, metrics=list(metrics))
    head_history = model.fit(epochs=head_epochs, **fit_args)

    if unfreeze_top is None:
        unfreeze(backbone, from_layer=0, batch_norm=batch_norm)
    else:
        unfreeze(backbone, top=unfreeze_top, batch_norm=batch_norm)
    model.compile(keras.optimizers.Adam(fine_tune_learning_rate), loss, metrics=list(metrics))
    tune_history = model.fit(initial_epoch=head_epochs, epochs=head_epochs + fine_tune_epochs, **fit_args)
    return model, {"head": head_history, "fine_tune": tune_history}
