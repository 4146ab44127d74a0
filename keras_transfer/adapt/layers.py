"""GradientReversal: identity forward, -lambda times the gradient backward (Ganin et al. 2016)."""

import keras
import tensorflow as tf

from keras_transfer._checks import require_number


@keras.saving.register_keras_serializable(package="keras_transfer")
class GradientReversal(keras.layers.Layer):
    """Identity on the forward pass; multiplies the incoming gradient by -lambda.

    lambda lives in a non-trainable variable (`layer.lambda_`), so a callback
    can change it during `fit()` without retracing.

    Args:
        lambda_: the reversal strength (>= 0).

    Returns:
        (on call) the inputs, unchanged.

    Example:
    >>> layer = GradientReversal(0.5)
    >>> x = tf.constant([1.0, 2.0])
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(x)
    ...     y = tf.reduce_sum(layer(x) * 3.0)
    >>> tape.gradient(y, x).numpy().tolist()
    [-1.5, -1.5]
    """

    def __init__(self, lambda_=1.0, **kwargs):
        super().__init__(**kwargs)
        lambda_ = require_number(lambda_, "lambda_")
        self.lambda_ = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(lambda_),
            trainable=False,
            name="lambda",
        )
        self.built = True

    def call(self, inputs):
        strength = tf.convert_to_tensor(self.lambda_)

        @tf.custom_gradient
        def reverse(x):
            def grad(upstream):
                return -tf.cast(strength, upstream.dtype) * upstream

            return tf.identity(x), grad

        return reverse(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "lambda_": float(self.lambda_.numpy())}
