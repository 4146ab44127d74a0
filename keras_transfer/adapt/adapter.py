"""`Adapter`: the base of the unsupervised domain adaptation models.

An adapter trains a backbone and a classifier on batches `((x_source,
y_source), x_target)` from `domain_pairs(...)`, the target without labels:
the task loss on the source labels plus the one term a method adds,
`adaptation_loss(batch)`. Both domains go through the networks here; a
method file says only what its term is. `predict` gives class outputs and
`evaluate` takes labelled `(x, y)` target data.
"""

from typing import NamedTuple

import keras
import tensorflow as tf

from keras_transfer._checks import renamed_argument
from keras_transfer._checks import require_layer
from keras_transfer._checks import require_number
from keras_transfer._custom_step import CustomStepModel
from keras_transfer._custom_step import StepTerms
from keras_transfer._training import BackboneAlias
from keras_transfer._training import gather_replicas
from keras_transfer.adapt.callbacks import CollapseGuard

DOMAIN_STATISTICS = ("joint", "separate")


class DomainOutputs(NamedTuple):
    """One domain's batch through the networks: backbone features, class logits, hidden outputs."""

    features: tf.Tensor
    logits: tf.Tensor = None
    hidden: tuple = ()


class DomainBatch(NamedTuple):
    """What `Adapter.adaptation_loss` sees: both domains through the networks, the source labels."""

    source: DomainOutputs
    target: DomainOutputs
    y_source: tf.Tensor
    source_weight: tf.Tensor = None


def unpack_domain_pair(data):
    """((x_s, y_s[, w_s]), x_t) -> x_s, y_s, w_s, x_t, with a clear error otherwise."""
    if not (
        isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], (tuple, list))
    ):
        raise ValueError(
            "training data must be batches ((x_source, y_source), x_target), as domain_pairs() "
            "gives; for a labelled target use evaluate(x, y)."
        )
    source, x_target = data
    if isinstance(x_target, (tuple, list)):
        raise ValueError(
            "the target part of a training batch must be inputs only (unsupervised adaptation); "
            "got a tuple, i.e. target labels. Drop them: domain_pairs(source, x_target, ...)."
        )
    if len(source) == 2:
        (x_source, y_source), weights = source, None
    elif len(source) == 3:
        x_source, y_source, weights = source
    else:
        raise ValueError(
            f"the source part must be (x, y) or (x, y, sample_weight); got {len(source)} items."
        )
    if x_source.shape[1:] != x_target.shape[1:]:
        raise ValueError(
            f"source inputs have shape {tuple(x_source.shape[1:])} per sample and target inputs "
            f"{tuple(x_target.shape[1:])}; they must match."
        )
    return x_source, y_source, weights, x_target


def largest_class_share(logits):
    """The share of a batch given its most frequent predicted class (1.0: all one class).

    Example:
    >>> round(float(largest_class_share(tf.constant([[2.0, 0.0], [3.0, 1.0], [0.0, 1.0]]))), 4)
    0.6667
    """
    predicted = tf.argmax(logits, axis=-1)
    counts = tf.reduce_sum(tf.one_hot(predicted, tf.shape(logits)[-1]), axis=0)
    return tf.reduce_max(counts) / tf.cast(tf.shape(logits)[0], tf.float32)


def feature_shape(backbone):
    """The per-sample shape of a backbone's output, or None where it is not known yet."""
    try:
        return tuple(backbone.outputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


class Adapter(BackboneAlias, CustomStepModel):
    """Base of the unsupervised domain adaptation models: task loss + one adaptation term.

    Loss = task loss on the source labels + `adaptation_loss(batch)`, the
    term of the method, which a subclass implements and weighs itself. Its
    `strength` is a non-trainable variable a schedule (`DANNSchedule`) ramps
    from 0 during `fit()`; what it scales is the method's choice.

    Subclasses set `adaptation_terms` (the names of the logs their term
    returns) and `uses_target_logits` (whether the classifier runs on the
    target batch too), and implement `adaptation_loss`.

    Training also logs `target_class_share` and `source_class_share`, the
    share of each domain's batch given its most frequent predicted class;
    `fit` adds a `CollapseGuard` (unless given one), which stops training and
    restores healthy weights when the target's share reaches 0.9 while the
    source's stays below (an untrained network gives one class to both),
    naming the method's terms.

    Args:
        backbone: Keras model from inputs to features (`feature_extractor=`
            before 0.2, still accepted for one release).
        classifier: Keras model from features to class logits.
        strength: the initial `strength`.
        domain_statistics: how BatchNorm layers see the two domains in training:
            "joint" (one batch of both, as TLlib and CDAN's code) or "separate"
            (each domain its own batch and statistics, as ADAPT and DANN's code).

    Example:
    >>> class EntropyMinimization(Adapter):  # doctest: +SKIP
    ...     adaptation_terms = ("entropy",)
    ...     uses_target_logits = True
    ...     def adaptation_loss(self, batch):
    ...         p = tf.nn.softmax(batch.target.logits)
    ...         entropy = -tf.reduce_mean(tf.reduce_sum(p * tf.math.log(p + 1e-8), -1))
    ...         return self.strength * entropy, {"entropy": entropy}
    """

    adaptation_terms = ()
    uses_target_logits = False
    # The backbone is stored as `feature_extractor`, the first release's name, in the config and
    # in the weights file, so files load in either release.
    _nested = ("feature_extractor", "classifier")
    _saved_names = {"feature_extractor": "backbone"}

    def __init__(
        self, backbone=None, classifier=None, strength=1.0, domain_statistics="joint", **kwargs
    ):
        backbone = renamed_argument(
            kwargs, "feature_extractor", "backbone", backbone, None, type(self).__name__
        )
        if domain_statistics not in DOMAIN_STATISTICS:
            raise ValueError(
                f"domain_statistics must be one of {DOMAIN_STATISTICS}, got {domain_statistics!r}."
            )
        super().__init__(**kwargs)
        self.domain_statistics = domain_statistics
        require_layer(backbone, "backbone (formerly feature_extractor)")
        require_layer(classifier, "classifier")
        self.feature_extractor = backbone
        self.classifier = classifier
        self.loss_terms = (
            "task_loss",
            *self.adaptation_terms,
            "target_class_share",
            "source_class_share",
        )
        self._create_strength(strength)
        self.built = backbone.built and classifier.built  # the rest builds at the first step

    # -- what a method defines -------------------------------------------------------------

    def adaptation_loss(self, batch):
        """The method's term on a `DomainBatch`: (weighted loss added to the task loss, {name:
        log}).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement adaptation_loss(batch).")

    def _create_strength(self, initial):
        self._strength = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(require_number(initial, "strength")),
            trainable=False,
            name="strength",
        )

    @property
    def strength(self):
        """The variable a schedule ramps during `fit()` (1 unless one does)."""
        return self._strength

    def get_config(self):
        return {**super().get_config(), "domain_statistics": self.domain_statistics}

    def set_adaptation_strength(self, value):
        """Sets `strength` (DANNSchedule calls it before each step)."""
        self.strength.assign(value)

    # -- the networks ----------------------------------------------------------------------

    def call(self, inputs, training=False):
        return self.classifier(self.feature_extractor(inputs, training=training), training=training)

    def _classify(self, features, training):
        """Class logits and the hidden outputs a method reads (none by default)."""
        return self.classifier(features, training=training), ()

    def _both_domains(self, x_source, x_target, training):
        """Both domains through the networks as ONE batch, so BatchNorm normalises them with
        shared statistics (as TLlib and CDAN do), split back into (source, target) outputs;
        with `domain_statistics="separate"` the backbone sees each domain on its own."""
        n = tf.shape(x_source)[0]
        if self.domain_statistics == "separate":
            features = tf.concat(
                [
                    self.feature_extractor(x_source, training=training),
                    self.feature_extractor(x_target, training=training),
                ],
                0,
            )
        else:
            features = self.feature_extractor(tf.concat([x_source, x_target], 0), training=training)
        classified = features if self.uses_target_logits else features[:n]
        logits, hidden = self._classify(classified, training)
        source = DomainOutputs(features[:n], logits[:n], tuple(h[:n] for h in hidden))
        if not self.uses_target_logits:
            return source, DomainOutputs(features[n:])
        return source, DomainOutputs(features[n:], logits[n:], tuple(h[n:] for h in hidden))

    def compute_terms(self, data, training):
        if not training:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            logits = self(x, training=False)
            task = self.task_loss_mean(y, logits, sample_weight)
            return StepTerms({"loss": task, "task_loss": task}, y, logits, sample_weight)
        x_source, y_source, weights, x_target = unpack_domain_pair(data)
        source, target = self._both_domains(x_source, x_target, training)
        task = self.task_loss_mean(y_source, source.logits, weights)
        added, logs = self.adaptation_loss(DomainBatch(source, target, y_source, weights))
        target_logits = target.logits
        if target_logits is None:  # only watched: no gradient, dropout and BatchNorm at inference
            target_logits = tf.stop_gradient(self.classifier(target.features, training=False))
        logs["target_class_share"] = largest_class_share(gather_replicas(target_logits))
        logs["source_class_share"] = largest_class_share(gather_replicas(source.logits))
        return StepTerms(
            {"loss": task + added, "task_loss": task, **logs}, y_source, source.logits, weights
        )

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, with a `CollapseGuard` unless `callbacks` hold one."""
        callbacks = list(callbacks or [])
        if not any(isinstance(callback, CollapseGuard) for callback in callbacks):
            callbacks.insert(0, CollapseGuard())  # first: checkpoints see the restored weights
        return super().fit(*args, callbacks=callbacks, **kwargs)
