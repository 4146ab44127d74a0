"""CDAN and CDAN+E: a domain discriminator conditioned on the class predictions (Long et al.)."""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_number
from keras_transfer._training import gather_replicas
from keras_transfer.adapt.adapter import feature_shape
from keras_transfer.adapt.dann import DANN
from keras_transfer.adapt.domain import default_discriminator


@keras.saving.register_keras_serializable(package="keras_transfer")
class MultilinearMap(keras.layers.Layer):
    """The features conditioned on the class probabilities: their outer product, flattened.

    Called on `[features (batch, d), probabilities (batch, c)]`, it gives
    `(batch, c * d)` with element `[c_i * d + d_j] = p_i * f_j`. When `c * d`
    exceeds `max_full_dim` it gives CDAN's randomized map instead,
    `(f R_f) * (p R_p) / sqrt(randomized_dim)` with fixed Gaussian `R_f`, `R_p`
    (saved with the layer), which keeps the discriminator's input small.

    Args:
        randomized_dim: width of the randomized map.
        max_full_dim: the largest `c * d` mapped exactly.
        seed: seed of the random projections.

    Example:
    >>> f, p = tf.constant([[1.0, 2.0]]), tf.constant([[0.25, 0.75]])
    >>> MultilinearMap()([f, p]).numpy().tolist()
    [[0.25, 0.5, 0.75, 1.5]]
    """

    def __init__(self, randomized_dim=1024, max_full_dim=4096, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.randomized_dim = int(require_number(randomized_dim, "randomized_dim", above=True))
        self.max_full_dim = int(require_number(max_full_dim, "max_full_dim", above=True))
        self.seed = int(seed)

    def build(self, input_shape):
        features, classes = int(input_shape[0][-1]), int(input_shape[1][-1])
        self.randomized = features * classes > self.max_full_dim
        self.output_dim = self.randomized_dim if self.randomized else features * classes
        if self.randomized:
            gaussian = keras.initializers.RandomNormal(stddev=1.0, seed=self.seed)
            self.feature_projection = self.add_weight(
                shape=(features, self.randomized_dim), initializer=gaussian, trainable=False
            )
            gaussian = keras.initializers.RandomNormal(stddev=1.0, seed=self.seed + 1)
            self.class_projection = self.add_weight(
                shape=(classes, self.randomized_dim), initializer=gaussian, trainable=False
            )

    def call(self, inputs):
        features, probabilities = (tf.cast(x, tf.float32) for x in inputs)
        if self.randomized:  # projections cast: under mixed precision Keras autocasts them
            feature_projection = tf.cast(self.feature_projection, tf.float32)
            class_projection = tf.cast(self.class_projection, tf.float32)
            projected = tf.matmul(features, feature_projection) * tf.matmul(
                probabilities, class_projection
            )
            return projected / tf.sqrt(float(self.randomized_dim))
        outer = probabilities[:, :, None] * features[:, None, :]
        return tf.reshape(outer, [-1, self.output_dim])

    def compute_output_shape(self, input_shape):
        features, classes = input_shape[0][-1], input_shape[1][-1]
        width = features * classes
        return (input_shape[0][0], self.randomized_dim if width > self.max_full_dim else width)

    def get_config(self):
        return {
            **super().get_config(),
            "randomized_dim": self.randomized_dim,
            "max_full_dim": self.max_full_dim,
            "seed": self.seed,
        }


def entropy_weights(probabilities):
    """CDAN+E's sample weights 1 + exp(-entropy(p)), normalised to mean 1 over the whole batch of
    both domains (all replicas), as TLlib does (the paper's code normalises each domain apart):
    confident predictions, source or target, count more in the domain loss."""
    entropy = -tf.reduce_sum(probabilities * tf.math.log(probabilities + 1e-5), axis=-1)
    weights = 1.0 + tf.exp(-entropy)
    return tf.stop_gradient(weights / tf.reduce_mean(gather_replicas(weights)))


@keras.saving.register_keras_serializable(package="keras_transfer")
class CDAN(DANN):
    """Conditional domain-adversarial training (Long et al. 2018), CDAN+E by default.

    DANN whose discriminator sees the features conditioned on the class
    predictions, `MultilinearMap([f, softmax(logits)])` (the softmax held
    constant), so it aligns the joint distribution of features and classes,
    not only the features. With `entropy_conditioning` (CDAN+E) each sample of
    the domain loss is weighted by `entropy_weights`, so uncertain target
    predictions pull less. The reversal strength is `strength`; pair it with
    `DANNSchedule`.

    Args:
        backbone: Keras model from inputs to features.
        classifier: Keras model from features to class logits.
        discriminator: Keras model from the conditioned features to one logit;
            default two Dense(500, relu) with dropout 0.5 as in the paper's code.
        entropy_conditioning: CDAN+E's sample weights (True) or plain CDAN.
        randomized_dim: width of the randomized map, used when features x
            classes > 4096.
        lambda_: initial reversal strength.
        domain_weight: weight of the domain loss.

    Example:
    >>> cdan = CDAN(backbone, classifier)  # doctest: +SKIP
    >>> cdan.compile(adaptation_optimizer(), metrics=["accuracy"])  # doctest: +SKIP
    >>> cdan.fit(domain_pairs((x_s, y_s), x_t, 64), epochs=10, callbacks=[DANNSchedule()])
    ... # doctest: +SKIP
    """

    uses_target_logits = True
    _nested = ("feature_extractor", "classifier", "discriminator")

    def __init__(
        self,
        backbone=None,
        classifier=None,
        discriminator=None,
        entropy_conditioning=True,
        randomized_dim=1024,
        lambda_=1.0,
        domain_weight=1.0,
        **kwargs,
    ):
        # Set first: DANN's constructor asks _discriminator_input_shape for the map's width.
        self.multilinear = MultilinearMap(randomized_dim, name="multilinear_map")
        self.entropy_conditioning = bool(entropy_conditioning)
        super().__init__(backbone, classifier, discriminator, lambda_, domain_weight, **kwargs)
        shapes = self._map_input_shapes()
        if shapes is not None:  # built now, so a saved one loads
            self.multilinear.build(shapes)

    def _default_discriminator(self):
        return default_discriminator(500, hidden_layers=2, dropout=0.5)

    def _map_input_shapes(self):
        """The map's input shapes (flat features, probabilities), or None where not known yet."""
        features, classes = feature_shape(self.backbone), feature_shape(self.classifier)
        if features is None or classes is None:
            return None
        return (None, int(np.prod(features))), (None, *classes)

    def _discriminator_input_shape(self):
        shapes = self._map_input_shapes()
        return None if shapes is None else self.multilinear.compute_output_shape(shapes)[1:]

    def _discriminator_inputs(self, batch):
        features = tf.concat([batch.source.features, batch.target.features], axis=0)
        logits = tf.concat([batch.source.logits, batch.target.logits], axis=0)
        probabilities = tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32)))
        flat = tf.reshape(features, [-1, int(np.prod(features.shape[1:]))])
        weights = entropy_weights(probabilities) if self.entropy_conditioning else None
        return self.multilinear([flat, probabilities]), weights

    def get_config(self):
        return {
            **super().get_config(),
            "entropy_conditioning": self.entropy_conditioning,
            "randomized_dim": self.multilinear.randomized_dim,
        }
