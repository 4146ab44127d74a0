"""L2-SP (Li et al. 2018): a pull towards the pretrained weights, riding on the variables'
regularizers.
"""

import keras
import numpy as np

from keras_transfer._checks import renamed_argument
from keras_transfer._checks import require_no_more_arguments
from keras_transfer._checks import require_number


@keras.saving.register_keras_serializable(package="keras_transfer")
class StayNear(keras.regularizers.Regularizer):
    """The L2-SP penalty of one weight: strength/2 · ||w − w0||² (w0 = 0 gives plain L2).

    Args:
        strength: `sp_weight` (transferred weights) or `l2_weight` (new weights).
        reference: the starting point w0, or None for zero.
    """

    def __init__(self, strength, reference=None):
        self.strength = float(strength)
        self.reference = None if reference is None else np.asarray(reference, dtype="float32")

    def __call__(self, weight):
        difference = weight if self.reference is None else weight - self.reference
        return 0.5 * self.strength * keras.ops.sum(keras.ops.square(difference))

    def get_config(self):
        return {
            "strength": self.strength,
            "reference": None if self.reference is None else self.reference.tolist(),
        }


def l2_sp(model, transferred, sp_weight=0.01, l2_weight=0.01, **renamed):
    """Adds the L2-SP penalty (Li et al. 2018) to a model's training loss.

    sp_weight/2 · ||w − w_pretrained||² on the weights of `transferred` (their
    values now are the pretrained point) and l2_weight/2 · ||w||² on every other
    weight of `model`. Frozen weights count once they are unfrozen
    (attach it before phase 2 or before `fine_tune`). The penalty rides on the
    variables' regularizers, so plain `fit()` and keras-transfer models include it via
    `model.losses`. It is a training-time term: a saved model does not keep it.

    Args:
        model: the model being fine-tuned.
        transferred: the pretrained part: a layer or model (e.g. the
            backbone), or a list of layers.
        sp_weight: strength of the pull towards the pretrained weights (the
            paper's alpha; `alpha=` before 0.2).
        l2_weight: strength of the plain L2 on the new weights (the paper's
            beta; `beta=` before 0.2).

    Returns:
        A dict {"transferred": n, "new": m} of the variables penalised.

    Example:
    >>> l2_sp(model, backbone, sp_weight=0.1, l2_weight=0.01)  # doctest: +SKIP
    """
    sp_weight = renamed_argument(renamed, "alpha", "sp_weight", sp_weight, 0.01, "l2_sp")
    l2_weight = renamed_argument(renamed, "beta", "l2_weight", l2_weight, 0.01, "l2_sp")
    require_no_more_arguments(renamed, "l2_sp")
    sp_weight = require_number(sp_weight, "sp_weight")
    l2_weight = require_number(l2_weight, "l2_weight")
    layers = transferred if isinstance(transferred, (list, tuple)) else [transferred]
    transferred_ids = {id(v) for layer in layers for v in layer.weights}
    if not transferred_ids:
        raise ValueError("transferred has no weights; pass the pretrained layers or backbone.")
    counts = {"transferred": 0, "new": 0}
    for variable in model.weights:
        # Frozen layers get their penalty too: Keras only evaluates the regularizers of
        # trainable weights, so it starts to count when `unfreeze` opens the layer.
        if id(variable) in transferred_ids:
            variable.regularizer = StayNear(sp_weight, keras.ops.convert_to_numpy(variable))
            counts["transferred"] += 1
        else:
            variable.regularizer = StayNear(l2_weight)
            counts["new"] += 1
    return counts
