"""DiscrepancyAdapter: aligns the domains' features by a discrepancy (DDC/DAN's MMD, Deep CORAL,
CMD).
"""

import keras
import tensorflow as tf

from keras_transfer._checks import renamed_argument
from keras_transfer._checks import require_number
from keras_transfer._training import gather_replicas
from keras_transfer.adapt.adapter import Adapter
from keras_transfer.adapt.losses import DISCREPANCIES
from keras_transfer.adapt.losses import get_discrepancy


@keras.saving.register_keras_serializable(package="keras_transfer")
class DiscrepancyAdapter(Adapter):
    """Aligns source and target features by a discrepancy: DDC/DAN (MMD), Deep CORAL, CMD.

    Loss = task loss on source labels + `discrepancy_weight` · `strength` · discrepancy(source
    features, target features), at the feature extractor's output and at any
    classifier layers named in `layers` (DAN adapts several).

    Args:
        backbone: Keras model from inputs to features.
        classifier: Keras model from features to class logits.
        discrepancy: "mmd", "coral", "cmd" or a callable(x, y) -> scalar.
        discrepancy_weight: weight of the discrepancy term(s) (`weight=`
            before 0.2, still accepted for one release).
        layers: names of classifier layers whose outputs are aligned too.
        options: keyword arguments for the discrepancy (e.g. {"estimator": "linear"}).

    Example:
    >>> adapter = DiscrepancyAdapter(backbone, classifier, "coral", discrepancy_weight=1.0)
    ... # doctest: +SKIP
    """

    adaptation_terms = ("discrepancy_loss", "weight")

    _saved_names = {**Adapter._saved_names, "weight": "discrepancy_weight"}

    def __init__(
        self,
        backbone=None,
        classifier=None,
        discrepancy="mmd",
        discrepancy_weight=1.0,
        layers=None,
        options=None,
        **kwargs,
    ):
        discrepancy_weight = renamed_argument(
            kwargs, "weight", "discrepancy_weight", discrepancy_weight, 1.0, "DiscrepancyAdapter"
        )
        super().__init__(backbone, classifier, **kwargs)
        self._discrepancy_fn = get_discrepancy(discrepancy)
        self.discrepancy = discrepancy
        self.discrepancy_weight = require_number(discrepancy_weight, "discrepancy_weight")
        self.options = dict(options or {})
        self.layers_to_align = list(layers or [])
        self.uses_target_logits = bool(self.layers_to_align)
        self._classifier_taps = self._taps(classifier, self.layers_to_align)

    @staticmethod
    def _taps(classifier, names):
        if not names:
            return None
        if not isinstance(classifier, keras.Model) or not getattr(classifier, "inputs", None):
            raise ValueError(
                "layers= needs a functional or built Sequential classifier to read layers from."
            )
        present = [layer.name for layer in classifier.layers]
        missing = [name for name in names if name not in present]
        if missing:
            raise ValueError(f"layers {missing} are not in the classifier; its layers: {present}.")
        return keras.Model(
            classifier.inputs,
            [classifier.outputs[0]] + [classifier.get_layer(n).output for n in names],
        )

    def _classify(self, features, training):
        if self._classifier_taps is None:
            return super()._classify(features, training)
        outputs = self._classifier_taps(features, training=training)
        return outputs[0], list(outputs[1:])

    def adaptation_loss(self, batch):
        pairs = [
            (batch.source.features, batch.target.features),
            *zip(batch.source.hidden, batch.target.hidden),
        ]
        # A discrepancy is not a mean over samples: it is measured on the whole global batch.
        discrepancy = tf.add_n(
            [
                self._discrepancy_fn(gather_replicas(s), gather_replicas(t), **self.options)
                for s, t in pairs
            ]
        )
        weight = self.discrepancy_weight * tf.convert_to_tensor(self.strength)
        return weight * discrepancy, {"discrepancy_loss": discrepancy, "weight": weight}

    def get_config(self):
        if self.discrepancy not in DISCREPANCIES:
            raise NotImplementedError(
                "A DiscrepancyAdapter with a callable discrepancy cannot be serialized; "
                "use 'mmd', 'coral' or 'cmd'."
            )
        return {
            **super().get_config(),
            "discrepancy": self.discrepancy,
            "discrepancy_weight": self.discrepancy_weight,
            "layers": self.layers_to_align,
            "options": self.options,
        }
