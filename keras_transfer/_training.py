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


# Keras 3 up to this version (measured: 3.15.1; keras-team/keras#20585, open since 3.7) fails
# in fit() and evaluate() under MultiWorkerMirroredStrategy with several workers: it
# reduces the first batch as one nested value and every scalar log along axis 0, both of
# which the collective strategy rejects. tf_keras (Keras 2) runs there.
LAST_KERAS_WITHOUT_MULTI_WORKER = (3, 15)


def worker_count(strategy):
    """Machines taking part in a strategy: the workers and chief of a MultiWorkerMirroredStrategy, else 1."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("worker", ())) + len(cluster.get("chief", ())))


def require_one_machine(strategy, call):
    """Refuses a Keras 3 fit/evaluate under a multi-worker strategy, before any work starts.

    Args:
        strategy: the model's `distribute_strategy`.
        call: what was called, for the message (e.g. "Distiller.fit").

    Raises:
        RuntimeError: several workers, and a Keras version whose fit() fails there.
    """
    workers = worker_count(strategy)
    version = tuple(int(part) for part in keras.version().split(".")[:2])
    if workers > 1 and version <= LAST_KERAS_WITHOUT_MULTI_WORKER:
        raise RuntimeError(
            f"{call} cannot run under MultiWorkerMirroredStrategy with {workers} workers: Keras "
            f"{keras.version()}'s fit() and evaluate() fail there for every model (keras-team/keras#20585). "
            "Run MirroredStrategy on one machine, or for an int8 student kt.distill_quantize_aware, "
            "whose tf_keras fit() runs on several workers.")


class OneMachineFit:
    """Mixin: `fit` and `evaluate` refuse a multi-worker strategy up front (see `require_one_machine`)."""

    def fit(self, *args, **kwargs):
        require_one_machine(self.distribute_strategy, f"{type(self).__name__}.fit")
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        require_one_machine(self.distribute_strategy, f"{type(self).__name__}.evaluate")
        return super().evaluate(*args, **kwargs)
