"""SHOT: source-free adaptation of a trained model to unlabelled target data (Liang et al. 2020)."""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_number
from keras_transfer._training import ends_in_softmax
from keras_transfer.adapt.batchnorm import copy_model
from keras_transfer.adapt.batchnorm import require_target_inputs
from keras_transfer.adapt.recipe import InverseDecay


def information_maximization(probabilities):
    """SHOT's information-maximisation loss: confident and diverse predictions.

    The mean entropy of the predictions (each one confident) minus the entropy
    of their mean (the classes used evenly over the batch); minimising it
    avoids the collapse to one class that entropy alone invites.

    Args:
        probabilities: (batch, classes) class probabilities.

    Returns:
        A scalar tensor, between -log(classes) and log(classes).

    Example:
    >>> certain_and_even = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(information_maximization(certain_and_even)), 4)  # -log 2
    -0.6931
    """
    p = tf.cast(probabilities, tf.float32)
    entropy = -tf.reduce_mean(tf.reduce_sum(p * tf.math.log(p + 1e-5), axis=-1))
    mean = tf.reduce_mean(p, axis=0)
    return entropy + tf.reduce_sum(mean * tf.math.log(mean + 1e-5))


def cluster_pseudo_labels(features, probabilities, rounds=2):
    """SHOT's pseudo-labels: nearest class centroid of the target features, by cosine distance.

    Features get a constant 1 appended and are L2-normalised; the first
    centroids are the features' means weighted by the predicted probabilities,
    later ones the means of the samples each labelled; each round labels every
    sample by its nearest centroid.

    Args:
        features: (n, d) target features (the classifier head's inputs).
        probabilities: (n, classes) the model's predicted probabilities.
        rounds: labellings (SHOT's 2: one from the soft centroids, one more).

    Returns:
        (n,) int32 labels.

    Example:
    >>> f = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> p = np.array([[0.6, 0.4], [0.6, 0.4], [0.4, 0.6]])
    >>> cluster_pseudo_labels(f, p).tolist()
    [0, 0, 1]
    """
    rounds = int(require_number(rounds, "rounds", above=True, integer=True))
    features = np.asarray(features, np.float64).reshape(len(features), -1)
    features = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    weights = np.asarray(probabilities, np.float64)
    classes = weights.shape[1]
    for _ in range(rounds):
        centroids = weights.T @ features / (1e-8 + weights.sum(0)[:, None])
        centroids /= 1e-8 + np.linalg.norm(centroids, axis=1, keepdims=True)
        similarity = features @ centroids.T
        similarity[:, weights.sum(0) <= 0] = -np.inf  # a class no sample has is no centroid
        labels = np.argmax(similarity, axis=1)  # the smallest cosine distance
        weights = np.eye(classes)[labels]
    return labels.astype("int32")


def classifier_head(model):
    """The model's last layer (inside nested models): the head SHOT freezes."""
    head = model.layers[-1]
    while hasattr(head, "layers"):
        head = head.layers[-1]
    if getattr(head, "kernel", None) is None:
        raise ValueError(
            "model must end with its classifier layer (a layer with a kernel, e.g. Dense) whose "
            f"inputs are the features SHOT clusters; it ends with {type(head).__name__} "
            f"{head.name!r}."
        )
    return head


def shot(
    model,
    x_target,
    epochs=30,
    batch_size=64,
    pseudo_label_weight=0.1,
    learning_rate=0.01,
    seed=0,
):
    """A copy of a trained source model adapted to unlabelled target images by SHOT.

    No source data: the classifier head (the model's last layer) is frozen
    and everything before it is trained on the target with
    `information_maximization` plus `pseudo_label_weight` x the cross-entropy
    against `cluster_pseudo_labels`, recomputed at the start of every epoch.
    The optimizer is SGD Nesterov 0.9 with weight decay 5e-4 and the rate
    `learning_rate` x (1 + 10 p)^-0.75 over the run's progress p, as in
    SHOT's code (its weight decay is Keras' decoupled one, not PyTorch's L2);
    trainable BatchNorm layers train on target batches, frozen layers stay
    frozen. The model itself is unchanged.

    Args:
        model: a Functional or Sequential Keras model ending in its classifier
            layer, or a `.keras` file of one (loaded in safe mode). Its outputs
            are logits, or probabilities if it ends in a softmax.
        x_target: unlabelled target inputs, an array.
        epochs: passes over the target (SHOT's 30).
        batch_size: batch size (SHOT's 64).
        pseudo_label_weight: weight of the pseudo-label cross-entropy (SHOT's
            digits 0.1; 0 gives information maximisation alone).
        learning_rate: the initial rate.
        seed: seed of the batch order.

    Returns:
        A new Keras model of the same architecture, ready to save or export.

    Example:
    >>> adapted = shot("source_model.keras", x_target)  # doctest: +SKIP
    """
    epochs = int(require_number(epochs, "epochs", above=True, integer=True))
    batch_size = int(require_number(batch_size, "batch_size", above=True, integer=True))
    pseudo_label_weight = require_number(pseudo_label_weight, "pseudo_label_weight")
    learning_rate = require_number(learning_rate, "learning_rate", above=True)
    x = np.asarray(x_target)
    if x.dtype == object or x.ndim < 2 or len(x) < 2:
        raise ValueError(
            f"x_target must be an array of at least 2 unlabelled target inputs (samples first); "
            f"got shape {x.shape} and dtype {x.dtype}."
        )
    adapted = copy_model(model, needs_batch_norm=False)
    x = require_target_inputs(x, adapted)
    head = classifier_head(adapted)
    features_of = keras.models.clone_model(
        adapted,
        clone_function=lambda layer: keras.layers.Identity() if layer is head else layer,
        recursive=True,
    )
    from_logits = not ends_in_softmax(adapted)
    head_variables = {id(v) for v in head.weights}
    trained = [v for v in adapted.trainable_variables if id(v) not in head_variables]
    if not trained:
        raise ValueError(
            "model has nothing trainable before its head (every layer but the head is frozen): "
            "SHOT trains the feature layers; set their trainable=True first."
        )
    steps = epochs * -(-len(x) // batch_size)
    optimizer = keras.optimizers.SGD(
        InverseDecay(learning_rate, gamma=10.0 / steps),
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
    )

    def probabilities_of(outputs):
        outputs = tf.cast(outputs, tf.float32)
        return tf.nn.softmax(outputs) if from_logits else outputs

    @tf.function
    def step(x_batch, labels):
        with tf.GradientTape() as tape:
            p = probabilities_of(adapted(x_batch, training=True))
            pseudo = -tf.reduce_mean(tf.math.log(tf.gather(p, labels, axis=1, batch_dims=1) + 1e-5))
            loss = information_maximization(p) + pseudo_label_weight * pseudo
        optimizer.apply(tape.gradient(loss, trained), trained)

    @tf.function(reduce_retracing=True)
    def infer(x_batch):
        return features_of(x_batch, training=False), probabilities_of(adapted(x_batch))

    for epoch in range(epochs):
        inferred = [infer(tf.constant(x[i : i + 256])) for i in range(0, len(x), 256)]
        features, p = (np.concatenate([part[k].numpy() for part in inferred]) for k in (0, 1))
        labels = cluster_pseudo_labels(features, p)
        order = np.random.default_rng(seed + epoch).permutation(len(x))
        for start in range(0, len(x) - 1, batch_size):  # no batch of one for BatchNorm
            batch = order[start : start + batch_size]
            step(tf.constant(x[batch]), tf.constant(labels[batch]))
    return adapted
