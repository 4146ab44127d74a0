"""Helpers shared by the models that write their own `train_step`."""

import keras
import tensorflow as tf


def per_replica(loss):
    """Scales a replica's mean loss so that summed gradients give the global mean.

    Under `tf.distribute`, each replica computes its loss over its share of the
    global batch and the optimizer sums gradients across replicas; dividing by
    the number of replicas makes that sum the gradient of the global mean.
    Outside a strategy this is the identity.
    """
    replicas = replica_count()
    return loss if replicas == 1 else loss / tf.cast(replicas, loss.dtype)


def ends_in_softmax(model):
    """Whether a model's last layer turns its outputs into probabilities."""
    if not getattr(model, "layers", None):
        return False
    last = model.layers[-1]
    if type(last).__name__ == "Softmax":
        return True
    activation = last.get_config().get("activation") if hasattr(last, "get_config") else None
    return activation == "softmax"


def replica_count():
    """Replicas of the current tf.distribute strategy (1 outside one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def global_sum(value):
    """The sum of a per-replica value over all replicas (the value itself outside a strategy)."""
    if replica_count() == 1:
        return value
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def keras_loss_mean(loss, y_true, y_pred, sample_weight=None):
    """A Keras loss's mean over this replica's batch, as it would be without tf.distribute.

    Keras `Loss` objects divide their mean by the replica count inside a
    strategy (Keras' own train_step relies on that); our steps scale the
    total once with `per_replica`, so that factor is undone here. A plain
    loss function (e.g. from a string) returns per-sample values: they are
    averaged.
    """
    if isinstance(loss, keras.losses.Loss):
        value = loss(y_true, y_pred, sample_weight=sample_weight)
        return value * tf.cast(replica_count(), value.dtype)
    value = tf.convert_to_tensor(loss(y_true, y_pred))
    if sample_weight is not None:
        value = value * tf.cast(tf.reshape(sample_weight, tf.shape(value)), value.dtype)
    return tf.reduce_mean(value)


def strategy_loss_unscaled(value, strategy):
    """Undoes Keras' 1/replicas factor in a keras.distillation strategy whose losses are Loss objects."""
    leaves = keras.tree.flatten(getattr(strategy, "loss", None))
    if leaves and all(isinstance(leaf, keras.losses.Loss) for leaf in leaves if leaf is not None):
        return value * tf.cast(replica_count(), value.dtype)
    return value


class SavesCompileArguments:
    """Mixin for Models whose compile() takes its own arguments (task losses, ...).

    `_own_compile_arguments()` returns them; they are saved in the .keras
    file's compile config and passed back to compile() on load.
    """

    def _own_compile_arguments(self):
        return {}

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None:
            config.update({key: keras.saving.serialize_keras_object(value)
                           for key, value in self._own_compile_arguments().items()})
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)
