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
    """Whether a model's last operation turns its outputs into probabilities.

    Looks into nested models (a Sequential head inside a functional model) and
    sees a Softmax layer, an activation="softmax" layer and `keras.ops.softmax`.
    """
    operations = getattr(model, "operations", None) or getattr(model, "layers", None)
    if not operations:
        return False
    last = operations[-1]
    if getattr(last, "operations", None) or getattr(last, "layers", None):
        return ends_in_softmax(last)
    if type(last).__name__ == "Softmax":
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", None) == "softmax"


def replica_count():
    """Replicas of the current tf.distribute strategy (1 outside one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def global_sum(value):
    """The sum of a per-replica value over all replicas (the value itself outside a strategy)."""
    if replica_count() == 1:
        return value
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def gather_replicas(value):
    """A per-replica batch joined with the other replicas' along axis 0 (as is outside a strategy).

    For terms that are not means over samples (MMD, CORAL, CMD): computed on the
    gathered batch, each replica holds the global batch's value, and since the
    gather's gradient sums over replicas, `per_replica` scaling gives the
    single-device gradient.
    """
    if replica_count() == 1:
        return value
    return tf.distribute.get_replica_context().all_gather(value, axis=0)


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
    """Undoes Keras' 1/replicas factor in a keras.distillation strategy of Loss objects."""
    leaves = keras.tree.flatten(getattr(strategy, "loss", None))
    if leaves and all(isinstance(leaf, keras.losses.Loss) for leaf in leaves if leaf is not None):
        return value * tf.cast(replica_count(), value.dtype)
    return value


# Keras 3.15's fit() and evaluate() fail under MultiWorkerMirroredStrategy with several workers
# for every model (keras-team/keras#20585): before the first step they reduce a whole nested
# input batch in one call, and after each step they reduce every log along axis 0; the
# collective strategy rejects both. keras-transfer's models avoid both (`MultiWorkerFit`,
# `step_logs`); a plain Keras model cannot, so `fine_tune` refuses (`require_one_machine`).
# The keras<3.16 pin and tests/test_distribute.py keep this honest.


def worker_count(strategy):
    """Machines taking part in a strategy: the workers and chief of a MultiWorkerMirroredStrategy,
    else 1.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("worker", ())) + len(cluster.get("chief", ())))


def step_logs(model, logs=None):
    """What a train or test step returns: `logs`, by default `model.get_metrics_result()`.

    On several workers each value is shaped (1,), so that Keras' reduction along
    axis 0 has an axis to reduce; fit() hands callbacks and History scalars.
    """
    if logs is None:
        logs = model.get_metrics_result()
    if worker_count(model.distribute_strategy) > 1:
        logs = {name: keras.ops.reshape(value, (1,)) for name, value in logs.items()}
    return logs


def require_one_machine(strategy, call):
    """Refuses to fit a plain Keras model under a multi-worker strategy, before any work starts.

    Args:
        strategy: the model's `distribute_strategy`.
        call: what was called, for the message (e.g. "fine_tune").

    Raises:
        RuntimeError: the strategy spans several workers.
    """
    workers = worker_count(strategy)
    if workers > 1:
        raise RuntimeError(
            f"{call} trains a plain Keras model, and Keras {keras.version()}'s fit() fails under "
            f"MultiWorkerMirroredStrategy with {workers} workers (keras-team/keras#20585). Use "
            "MirroredStrategy on one machine; keras-transfer's own models (its Distiller, "
            "adapters, multi-task and zero-shot models) do run on several workers."
        )


class MultiWorkerFit:
    """Mixin: builds the model from one replica's own share of the first batch.

    Keras sums that batch across replicas only to learn its shapes: a call the
    collective strategy rejects on several workers, and one that fails on
    shares of unequal size (a global batch of 5 on 2 replicas: AddN of 3 and 2
    rows). The local share has the shapes the model needs. This
    overrides Keras 3.15's private `_maybe_symbolic_build` (hence the keras<3.16
    pin); steps must return `step_logs(self)`.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if iterator is not None and (
            worker_count(strategy) > 1 or strategy.num_replicas_in_sync > 1
        ):
            local = self.distribute_strategy.experimental_local_results
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(lambda value: local(value)[0], next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


class BackboneAlias:
    """`backbone`: the public name of a network kept under its first-release attribute.

    Keras' saving walks `dir()` and stores a network under the first name that
    reaches it, so the alias is hidden from `dir()`: the weights stay where files
    of the first release have them (`_backbone_attribute`), and those files load.
    """

    _backbone_attribute = "feature_extractor"

    @property
    def backbone(self):
        """The network from inputs to features (or embeddings)."""
        return getattr(self, self._backbone_attribute)

    def __dir__(self):
        return [name for name in super().__dir__() if name != "backbone"]
