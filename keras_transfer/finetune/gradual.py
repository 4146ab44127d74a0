"""GradualUnfreezing: opens the backbone block by block during `fit()` (ULMFiT's schedule)."""

import keras

from keras_transfer.finetune.freezing import _also_train
from keras_transfer.finetune.freezing import _effective_trainable
from keras_transfer.finetune.freezing import _weighted
from keras_transfer.finetune.freezing import leaf_layers
from keras_transfer.finetune.freezing import refresh_training

_BATCH_NORM = (keras.layers.BatchNormalization,)


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
            return [
                [layer]
                for layer in _weighted(leaves)
                if not state[id(layer)] and not isinstance(layer, skip)
            ]
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
        step, self._pending = (
            self._pending[-self.blocks_per_step :],
            self._pending[: -self.blocks_per_step],
        )
        layers = [layer for block in step for layer in block]
        if self.batch_norm == "frozen":
            layers = [layer for layer in layers if not isinstance(layer, _BATCH_NORM)]
        _also_train(target, layers)
        self.unfrozen_at[epoch] = [layer.name for layer in layers]
        refresh_training(self.model)
