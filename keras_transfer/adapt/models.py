"""Unsupervised domain adaptation models: DANN and discrepancy-based adapters.

Both train on `domain_pairs(...)` batches `((x_source, y_source), x_target)`
(the target without labels), predict class outputs with `predict`, and
`evaluate` on labelled `(x, y)` target data.
"""

import keras
import tensorflow as tf

from keras_transfer._checks import require_layer
from keras_transfer._training import MultiWorkerFit
from keras_transfer._training import SavesCompileArguments
from keras_transfer._training import keras_loss_mean
from keras_transfer._training import per_replica
from keras_transfer._training import step_logs
from keras_transfer.adapt.layers import GradientReversal
from keras_transfer.adapt.losses import DISCREPANCIES
from keras_transfer.adapt.losses import get_discrepancy


def _feature_shape(feature_extractor):
    try:
        return tuple(feature_extractor.outputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None


def _unpack_pair(data):
    """((x_s, y_s[, w_s]), x_t) -> x_s, y_s, w_s, x_t, with a clear error otherwise."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], (tuple, list))):
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
        raise ValueError(f"the source part must be (x, y) or (x, y, sample_weight); got {len(source)} items.")
    return x_source, y_source, weights, x_target


class _AdaptationModel(MultiWorkerFit, SavesCompileArguments, keras.Model):
    """What DANN and DiscrepancyAdapter share: the task model, compile, metrics, evaluation."""

    _terms = ("loss", "task_loss")

    def __init__(self, feature_extractor, classifier, **kwargs):
        super().__init__(**kwargs)
        require_layer(feature_extractor, "feature_extractor")
        require_layer(classifier, "classifier")
        self.feature_extractor = feature_extractor
        self.classifier = classifier
        self._trackers = [keras.metrics.Mean(name=name) for name in self._terms]

    def call(self, inputs, training=False):
        return self.classifier(self.feature_extractor(inputs, training=training), training=training)

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configures training; `loss` is the task loss on source labels (default: sparse CE on logits)."""
        self._task_loss = keras.losses.get(loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def _own_compile_arguments(self):
        return {"loss": self._task_loss}

    @property
    def metrics(self):
        compiled = [m for m in super().metrics if m.name != "loss" and m not in self._trackers]
        return self._trackers + compiled

    def _task(self, y, logits, sample_weight):
        return keras_loss_mean(self._task_loss, y, logits, sample_weight)

    def _report(self, terms, y, logits, sample_weight):
        batch_size = tf.shape(logits)[0]
        for tracker in self._trackers:
            if tracker.name in terms:
                tracker.update_state(terms[tracker.name], sample_weight=batch_size)
        for metric in self.metrics[len(self._trackers):]:
            metric.update_state(y, logits, sample_weight=sample_weight)
        return step_logs(self)

    def train_step(self, data):
        x_source, y_source, weights, x_target = _unpack_pair(data)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            terms, logits = self._terms_of(x_source, y_source, weights, x_target)
            scaled = self.optimizer.scale_loss(per_replica(terms["loss"]))
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._report(terms, y_source, logits, weights)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits = self(x, training=False)
        task = self._task(y, logits, sample_weight)
        return self._report({"loss": task, "task_loss": task}, y, logits, sample_weight)

    def _check_target(self, x_source, x_target):
        if x_source.shape[1:] != x_target.shape[1:]:
            raise ValueError(
                f"source inputs have shape {tuple(x_source.shape[1:])} per sample and target inputs "
                f"{tuple(x_target.shape[1:])}; they must match."
            )

    def get_config(self):
        return {
            **super().get_config(),
            "feature_extractor": keras.saving.serialize_keras_object(self.feature_extractor),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
        }

    @classmethod
    def _deserialize(cls, config, *keys):
        config = dict(config)
        for key in keys:
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return config


@keras.saving.register_keras_serializable(package="keras_transfer")
class DANN(_AdaptationModel):
    """Domain-adversarial training (Ganin et al. 2016) with a gradient reversal layer.

    Loss = task loss on source labels + `domain_weight` · binary cross-entropy
    of a discriminator telling source (0) from target (1) features, which reach
    it through `GradientReversal(lambda_)`: the discriminator learns to tell
    the domains apart, the feature extractor to make them indistinguishable.
    Pair it with `DANNSchedule` for the paper's lambda and learning-rate ramps.

    Args:
        feature_extractor: Keras model from inputs to features.
        classifier: Keras model from features to class logits.
        discriminator: Keras model from features to one logit; default a
            Dense(100, relu) -> Dense(1) as in the paper's digit experiments.
        lambda_: initial reversal strength (`dann.reversal.lambda_`).
        domain_weight: weight of the domain loss.

    Example:
    >>> dann = DANN(features, classifier)  # doctest: +SKIP
    >>> dann.compile(keras.optimizers.SGD(0.01, momentum=0.9), metrics=["accuracy"])  # doctest: +SKIP
    >>> dann.fit(domain_pairs((x_s, y_s), x_t, 64), epochs=10, callbacks=[DANNSchedule()])  # doctest: +SKIP
    >>> dann.evaluate(x_t_test, y_t_test)  # doctest: +SKIP
    """

    _terms = ("loss", "task_loss", "domain_loss", "domain_accuracy", "lambda")

    def __init__(self, feature_extractor, classifier, discriminator=None, lambda_=1.0, domain_weight=1.0, **kwargs):
        super().__init__(feature_extractor, classifier, **kwargs)
        self.discriminator = discriminator or self._default_discriminator()
        self._check_discriminator()
        self.reversal = GradientReversal(lambda_, name="gradient_reversal")
        self.domain_weight = float(domain_weight)

    def _default_discriminator(self):
        return keras.Sequential([keras.layers.Dense(100, activation="relu", name="d_hidden"),
                                 keras.layers.Dense(1, name="d_logit")], name="discriminator")

    def _check_discriminator(self):
        shape = _feature_shape(self.feature_extractor)
        if shape is None or any(d is None for d in shape):
            return  # checked at the first batch instead
        out = self.discriminator(tf.zeros((1,) + shape))  # builds it, too
        if tuple(out.shape[1:]) != (1,):
            raise ValueError(
                f"discriminator must output one logit per sample, shape (batch, 1); it gives "
                f"{tuple(out.shape)} on features of shape {(None,) + shape}."
            )

    def set_adaptation_strength(self, value):
        """Sets the reversal strength lambda (DANNSchedule ramps it from 0 to 1)."""
        self.reversal.lambda_.assign(value)

    def _terms_of(self, x_source, y_source, weights, x_target):
        self._check_target(x_source, x_target)
        source_features = self.feature_extractor(x_source, training=True)
        target_features = self.feature_extractor(x_target, training=True)
        logits = self.classifier(source_features, training=True)
        task = self._task(y_source, logits, weights)
        features = self.reversal(tf.concat([source_features, target_features], axis=0))
        domain_logits = tf.reshape(self.discriminator(features, training=True), [-1])
        domains = tf.concat([tf.zeros(tf.shape(source_features)[:1]), tf.ones(tf.shape(target_features)[:1])], 0)
        domain = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=domains, logits=domain_logits))
        domain_accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.cast(domain_logits > 0, tf.float32), domains), tf.float32))
        total = task + self.domain_weight * domain + tf.add_n([tf.constant(0.0)] + self.losses)
        return {"loss": total, "task_loss": task, "domain_loss": domain,
                "domain_accuracy": domain_accuracy, "lambda": tf.identity(self.reversal.lambda_)}, logits

    def get_config(self):
        return {**super().get_config(),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator),
                "lambda_": float(self.reversal.lambda_.numpy()), "domain_weight": self.domain_weight}

    @classmethod
    def from_config(cls, config):
        return cls(**cls._deserialize(config, "feature_extractor", "classifier", "discriminator"))


@keras.saving.register_keras_serializable(package="keras_transfer")
class DiscrepancyAdapter(_AdaptationModel):
    """Aligns source and target features by a discrepancy: DDC/DAN (MMD), Deep CORAL, CMD.

    Loss = task loss on source labels + `weight` · discrepancy(source
    features, target features), at the feature extractor's output and at any
    classifier layers named in `layers` (DAN adapts several).

    Args:
        feature_extractor: Keras model from inputs to features.
        classifier: Keras model from features to class logits.
        discrepancy: "mmd", "coral", "cmd" or a callable(x, y) -> scalar.
        weight: weight of the discrepancy term(s).
        layers: names of classifier layers whose outputs are aligned too.
        options: keyword arguments for the discrepancy (e.g. {"estimator": "linear"}).

    Example:
    >>> adapter = DiscrepancyAdapter(features, classifier, discrepancy="coral", weight=1.0)  # doctest: +SKIP
    """

    _terms = ("loss", "task_loss", "discrepancy_loss", "weight")

    def __init__(self, feature_extractor, classifier, discrepancy="mmd", weight=1.0, layers=None, options=None, **kwargs):
        super().__init__(feature_extractor, classifier, **kwargs)
        self._discrepancy_fn = get_discrepancy(discrepancy)
        self.discrepancy = discrepancy
        self.weight = float(weight)
        # What DANNSchedule ramps from 0 to 1: the discrepancy term's share of `weight`.
        self.strength = self.add_weight(shape=(), initializer="ones", trainable=False, name="strength")
        self.options = dict(options or {})
        self.layers_to_align = list(layers or [])
        self._classifier_taps = None
        if self.layers_to_align:
            if not isinstance(classifier, keras.Model) or not getattr(classifier, "inputs", None):
                raise ValueError("layers= needs a functional or built Sequential classifier to read layers from.")
            names = [layer.name for layer in classifier.layers]
            missing = [name for name in self.layers_to_align if name not in names]
            if missing:
                raise ValueError(f"layers {missing} are not in the classifier; its layers: {names}.")
            self._classifier_taps = keras.Model(
                classifier.inputs,
                [classifier.outputs[0]] + [classifier.get_layer(n).output for n in self.layers_to_align])

    def _classify(self, features, training):
        if self._classifier_taps is None:
            return self.classifier(features, training=training), []
        outputs = self._classifier_taps(features, training=training)
        return outputs[0], list(outputs[1:])

    def _terms_of(self, x_source, y_source, weights, x_target):
        self._check_target(x_source, x_target)
        source_features = self.feature_extractor(x_source, training=True)
        target_features = self.feature_extractor(x_target, training=True)
        logits, source_taps = self._classify(source_features, True)
        _, target_taps = self._classify(target_features, True)
        task = self._task(y_source, logits, weights)
        pairs = [(source_features, target_features)] + list(zip(source_taps, target_taps))
        discrepancy = tf.add_n([self._discrepancy_fn(s, t, **self.options) for s, t in pairs])
        weight = self.weight * tf.convert_to_tensor(self.strength)
        total = task + weight * discrepancy + tf.add_n([tf.constant(0.0)] + self.losses)
        return {"loss": total, "task_loss": task, "discrepancy_loss": discrepancy, "weight": weight}, logits

    def set_adaptation_strength(self, value):
        """Scales the discrepancy weight by `value` (DANNSchedule ramps it from 0 to 1)."""
        self.strength.assign(value)

    def get_config(self):
        if self.discrepancy not in DISCREPANCIES:
            raise NotImplementedError("A DiscrepancyAdapter with a callable discrepancy cannot be serialized; "
                                      "use 'mmd', 'coral' or 'cmd'.")
        return {**super().get_config(), "discrepancy": self.discrepancy, "weight": self.weight,
                "layers": self.layers_to_align, "options": self.options}

    @classmethod
    def from_config(cls, config):
        return cls(**cls._deserialize(config, "feature_extractor", "classifier"))
