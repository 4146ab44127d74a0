"""The demo's unsupervised domain adaptation stage: the source task under uneven light.

The source model's classes, photographed by a phone under uneven light (a
brightness ramp of random strength across each image), are a new domain with
no labels. Half of the labelled source images train both rows: a network on
them alone, and the same network adapted by MMD (DAN) to the other half's
images under uneven light, whose labels it never sees. Both are tested on the
source test images under uneven light.
"""

import dataclasses
import time

import keras
import numpy as np

from keras_transfer import adapt
from keras_transfer.datasets import domain_pairs
from keras_transfer.datasets import uneven_light
from keras_transfer.demo.networks import small_cnn
from keras_transfer.evaluation import plot_domain_embedding
from keras_transfer.evaluation import plot_history


@dataclasses.dataclass(frozen=True)
class AdaptationResult:
    """Target accuracies, proxy A-distances and the figures of the stage."""

    source_only_accuracy: float
    adapted_accuracy: float
    source_only_pad: float
    adapted_pad: float
    seconds: float
    embedding_png: str
    curves_png: str


def _networks(input_shape, classes, seed):
    keras.utils.set_random_seed(seed)
    model = small_cnn(input_shape, classes, name="adaptation")
    features = keras.Model(model.inputs, model.get_layer("features").output, name="features")
    classifier = keras.Sequential(
        [keras.Input(features.output_shape[1:]), model.get_layer("head")], name="classifier"
    )
    return features, classifier


def run_adaptation_stage(task, settings, embedding_png, curves_png):
    """Trains source-only and MMD-adapted networks; returns an `AdaptationResult`."""
    start = time.perf_counter()
    x, y = task.source_train
    order = np.random.default_rng(settings.seed).permutation(len(x))
    labelled, unlabelled = order[: len(x) // 2], order[len(x) // 2 :]
    source = (x[labelled], y[labelled])
    target = uneven_light(x[unlabelled], settings.seed + 1)
    x_test, y_test = uneven_light(task.source_test[0], settings.seed + 2), task.source_test[1]
    classes = len(task.source_classes)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    features, classifier = _networks(task.input_shape, classes, settings.seed)
    plain = keras.Sequential([features, classifier])
    plain.compile(keras.optimizers.Adam(3e-3), loss)
    plain.fit(
        *source,
        epochs=settings.adapt_epochs,
        batch_size=settings.batch_size,
        verbose=settings.verbose,
    )
    plain_features = features

    features, classifier = _networks(task.input_shape, classes, settings.seed)
    adapter = adapt.DiscrepancyAdapter(
        features, classifier, discrepancy="mmd", discrepancy_weight=0.3
    )
    adapter.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    history = adapter.fit(
        domain_pairs(source, target, batch_size=settings.batch_size, seed=settings.seed),
        epochs=settings.adapt_epochs,
        verbose=settings.verbose,
        callbacks=[adapt.DANNSchedule(schedule_learning_rate=False)],
    )

    def accuracy(model):
        return float(np.mean(np.argmax(model.predict(x_test, verbose=0), -1) == y_test))

    clean_test = task.source_test[0]
    embedded = {
        name: (model.predict(clean_test, verbose=0), model.predict(x_test, verbose=0))
        for name, model in (("source only", plain_features), ("after MMD adaptation", features))
    }
    plot_domain_embedding(embedded, embedding_png)
    plot_history(history, curves_png)
    return AdaptationResult(
        source_only_accuracy=accuracy(plain),
        adapted_accuracy=accuracy(adapter),
        source_only_pad=adapt.proxy_a_distance(*embedded["source only"]),
        adapted_pad=adapt.proxy_a_distance(*embedded["after MMD adaptation"]),
        seconds=time.perf_counter() - start,
        embedding_png=embedding_png,
        curves_png=curves_png,
    )
