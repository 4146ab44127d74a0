"""Layer-wise learning rates: lower rates for the layers nearer the input (discriminative fine-
tuning).
"""

import re

import keras

from keras_transfer.finetune.freezing import _weighted
from keras_transfer.finetune.freezing import leaf_layers


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
    >>> adam = keras.optimizers.Adam(1e-3)
    >>> optimizer = layerwise_optimizer(model, adam, decay=0.7)  # doctest: +SKIP
    >>> model.compile(optimizer, loss)  # doctest: +SKIP
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1]; got {decay!r}.")
    config = optimizer.get_config()
    if not isinstance(config.get("learning_rate"), (int, float)):
        raise ValueError(
            "layerwise_optimizer needs an optimizer with a float learning_rate, not a schedule."
        )
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
            {
                **config,
                "name": f"{config['name']}_x{factor:.3g}",
                "learning_rate": config["learning_rate"] * factor,
            }
        )
    return keras.optimizers.MultiOptimizer(mapping)
