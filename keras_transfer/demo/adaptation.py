"""The demo's adaptation stage: the source network adapted to the target domain without labels.

MMD (DAN) with the library's default weight, from the same initial weights and
for as many epochs as the source model, on every labelled source image paired
with the target domain's images, whose labels it never sees. Its baseline is
the source model on the target test images.
"""

import dataclasses
import time

import keras

from keras_transfer import adapt
from keras_transfer.demo.networks import small_cnn
from keras_transfer.demo.report import accuracy
from keras_transfer.domains import domain_pairs
from keras_transfer.evaluation import plot_domain_embedding
from keras_transfer.evaluation import plot_history


@dataclasses.dataclass(frozen=True)
class AdaptationResult:
    """The adapted networks, their target accuracy, proxy A-distances and the stage's figures."""

    backbone: keras.Model
    classifier: keras.Model
    adapted_accuracy: float
    source_only_pad: float
    adapted_pad: float
    seconds: float
    embedding_png: str
    curves_png: str


def split_at_features(model):
    """`model` (a `small_cnn`) as a backbone up to its `features` layer and a classifier."""
    backbone = keras.Model(model.inputs, model.get_layer("features").output, name="features")
    classifier = keras.Sequential(
        [keras.Input(backbone.output_shape[1:]), model.get_layer("head")], name="classifier"
    )
    return backbone, classifier


def run_adaptation_stage(task, settings, source_model, embedding_png, curves_png, callbacks=()):
    """Adapts a fresh copy of the source network with MMD; returns an `AdaptationResult`.

    Args:
        task: a `TransferTask`.
        settings: a `DemoSettings` (`adapt_epochs`, `batch_size`, `seed`, `verbose`).
        source_model: the trained source model, for the figure and distance before adaptation.
        embedding_png, curves_png: where to draw the features in 2-D and the training curves.
        callbacks: Keras callbacks for the adapter's `fit`.
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(settings.seed)
    backbone, classifier = split_at_features(
        small_cnn(task.input_shape, len(task.classes), name="adapted")
    )
    adapter = adapt.DiscrepancyAdapter(backbone, classifier, discrepancy="mmd")
    adapter.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    history = adapter.fit(
        domain_pairs(
            task.source_train, task.target_unlabelled, settings.batch_size, seed=settings.seed
        ),
        epochs=settings.adapt_epochs,
        verbose=settings.verbose,
        callbacks=[adapt.DANNSchedule(schedule_learning_rate=False), *callbacks],
    )
    seconds = time.perf_counter() - start
    x_target, y_target = task.target_test
    x_source = task.source_test[0]
    source_features = split_at_features(source_model)[0]
    embedded = {
        name: (model.predict(x_source, verbose=0), model.predict(x_target, verbose=0))
        for name, model in (("source only", source_features), ("after MMD adaptation", backbone))
    }
    plot_domain_embedding(embedded, embedding_png)
    plot_history(history, curves_png)
    return AdaptationResult(
        backbone=backbone,
        classifier=classifier,
        adapted_accuracy=accuracy(adapter.predict(x_target, verbose=0), y_target),
        source_only_pad=adapt.proxy_a_distance(*embedded["source only"]),
        adapted_pad=adapt.proxy_a_distance(*embedded["after MMD adaptation"]),
        seconds=seconds,
        embedding_png=embedding_png,
        curves_png=curves_png,
    )
