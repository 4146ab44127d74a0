"""LoRA: low-rank adapters on Keras' Dense, EinsumDense, Embedding and Conv layers."""

import keras

from keras_transfer.finetune.freezing import _also_train
from keras_transfer.finetune.freezing import leaf_layers

_LORA_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Embedding,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
)


def add_lora(model, rank, layers=None, lora_alpha=None):
    """Enables LoRA (Hu et al. 2021) on Dense/EinsumDense/Embedding/Conv layers via Keras'
    `enable_lora`.

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
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) does not support LoRA."
            )
    _also_train(model, chosen)
    for layer in chosen:
        layer.enable_lora(rank, lora_alpha=lora_alpha)
    return [layer.name for layer in chosen]


def resume_lora(model, seed=None):
    """Makes LoRA layers of a loaded model trainable again; call it before training resumes.

    Keras saves a LoRA layer with the low-rank update merged into its kernel
    and loads it with both low-rank matrices at zero, where their gradients are
    zero too: training after `load_model` or `BackupAndRestore` would leave the
    kernels as they are. This draws the first matrix afresh (he_uniform, as
    `enable_lora` does) and leaves the second at zero, so the model computes the
    same function and its adapters learn again from there.

    Args:
        model: a Keras model, e.g. from `keras.saving.load_model`.
        seed: optional seed of the draw.

    Returns:
        The names of the layers whose adapters were drawn afresh (those with
        both matrices at zero).

    Example:
    >>> model = keras.saving.load_model("lora_model.keras")  # doctest: +SKIP
    >>> resume_lora(model)  # doctest: +SKIP
    ['fc1', 'fc2']
    """
    initializer = keras.initializers.HeUniform(seed=seed)
    resumed = []
    for layer in leaf_layers(model):
        if not getattr(layer, "lora_enabled", False):
            continue
        first, second = layer.lora_kernel_a, layer.lora_kernel_b
        if keras.ops.any(first != 0) or keras.ops.any(second != 0):
            continue
        first.assign(initializer(first.shape, dtype=first.dtype))
        resumed.append(layer.name)
    return resumed
