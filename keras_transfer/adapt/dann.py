"""DANN: domain-adversarial training through a gradient reversal layer (Ganin et al. 2016)."""

import keras
import tensorflow as tf

from keras_transfer._checks import require_number
from keras_transfer.adapt.adapter import Adapter
from keras_transfer.adapt.adapter import feature_shape
from keras_transfer.adapt.domain import check_discriminator
from keras_transfer.adapt.domain import default_discriminator
from keras_transfer.adapt.domain import domain_classification_loss
from keras_transfer.adapt.layers import GradientReversal


@keras.saving.register_keras_serializable(package="keras_transfer")
class DANN(Adapter):
    """Domain-adversarial training (Ganin et al. 2016) with a gradient reversal layer.

    Loss = task loss on source labels + `domain_weight` · binary cross-entropy
    of a discriminator telling source (0) from target (1) features, which reach
    it through `GradientReversal(lambda_)`: the discriminator learns to tell
    the domains apart, the feature extractor to make them indistinguishable.
    The reversal strength lambda is the adapter's `strength`: pair it with
    `DANNSchedule` for the paper's lambda and learning-rate ramps.

    Args:
        backbone: Keras model from inputs to features.
        classifier: Keras model from features to class logits.
        discriminator: Keras model from features to one logit; default a
            Dense(100, relu) -> Dense(1) as in the paper's digit experiments.
        lambda_: initial reversal strength (`dann.reversal.lambda_`).
        domain_weight: weight of the domain loss.

    Example:
    >>> dann = DANN(features, classifier)  # doctest: +SKIP
    >>> dann.compile(keras.optimizers.SGD(0.01, momentum=0.9), metrics=["accuracy"])
    ... # doctest: +SKIP
    >>> pairs = domain_pairs((x_s, y_s), x_t, 64)  # doctest: +SKIP
    >>> dann.fit(pairs, epochs=10, callbacks=[DANNSchedule()])  # doctest: +SKIP
    >>> dann.evaluate(x_t_test, y_t_test)  # doctest: +SKIP
    """

    adaptation_terms = ("domain_loss", "domain_accuracy", "lambda")
    _nested = ("feature_extractor", "classifier", "discriminator")

    def __init__(
        self,
        backbone=None,
        classifier=None,
        discriminator=None,
        lambda_=1.0,
        domain_weight=1.0,
        **kwargs,
    ):
        super().__init__(backbone, classifier, strength=lambda_, **kwargs)
        self.discriminator = discriminator or self._default_discriminator()
        check_discriminator(self.discriminator, self._discriminator_input_shape())
        self.domain_weight = require_number(domain_weight, "domain_weight")

    def _default_discriminator(self):
        return default_discriminator()

    def _discriminator_input_shape(self):
        """The per-sample shape the discriminator receives, or None where not known yet."""
        return feature_shape(self.backbone)

    def _create_strength(self, initial):
        # The strength lives in the reversal layer, where files saved by the first release have it.
        self.reversal = GradientReversal(initial, name="gradient_reversal")

    @property
    def strength(self):
        return self.reversal.lambda_

    def _discriminator_inputs(self, batch):
        """What the discriminator sees of both domains (source rows first), and the rows'
        weights in its loss (None: equal)."""
        return tf.concat([batch.source.features, batch.target.features], axis=0), None

    def adaptation_loss(self, batch):
        inputs, weights = self._discriminator_inputs(batch)
        domain_logits = self.discriminator(self.reversal(inputs), training=True)
        loss, accuracy = domain_classification_loss(
            domain_logits, tf.shape(batch.source.features)[0], weights
        )
        logs = {
            "domain_loss": loss,
            "domain_accuracy": accuracy,
            "lambda": tf.identity(self.strength),
        }
        return self.domain_weight * loss, logs

    def get_config(self):
        return {
            **super().get_config(),
            "lambda_": float(self.strength.numpy()),
            "domain_weight": self.domain_weight,
        }
