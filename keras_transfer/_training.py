"""Helpers shared by the models that write their own `train_step`."""

import tensorflow as tf


def per_replica(loss):
    """Scales a replica's mean loss so that summed gradients give the global mean.

    Under `tf.distribute`, each replica computes its loss over its share of the
    global batch and the optimizer sums gradients across replicas; dividing by
    the number of replicas makes that sum the gradient of the global mean.
    Outside a strategy this is the identity.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
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
