"""The demo's transfer task: the first half of a dataset's classes is the source, the rest the
target.
"""

import dataclasses

import numpy as np

from keras_transfer import datasets

DATASETS = ("digits", "fashion_mnist")


@dataclasses.dataclass(frozen=True)
class TransferTask:
    """Source and target splits of one dataset, target labels renumbered from 0."""

    name: str
    source_train: tuple
    source_test: tuple
    target_train: tuple
    target_test: tuple
    target_unlabelled: np.ndarray
    source_classes: tuple
    target_classes: tuple

    @property
    def input_shape(self):
        return self.source_train[0].shape[1:]


def make_task(data="digits", labels_per_class=10, seed=0, source_limit=None, fashion_path=None):
    """Splits a dataset into a source task (classes of the first half) and a target task.

    Args:
        data: "digits" (bundled with scikit-learn) or "fashion_mnist".
        labels_per_class: labelled target training images kept per target class.
        seed: seed of the split and of the labelled subset.
        source_limit: keep at most this many source training images (None: all).
        fashion_path: optional folder with the Fashion-MNIST IDX files.

    Returns:
        A `TransferTask`.

    Example:
    >>> task = make_task("digits", labels_per_class=10)
    >>> task.target_classes
    (5, 6, 7, 8, 9)
    """
    if data not in DATASETS:
        raise ValueError(f"data must be one of {DATASETS}, got {data!r}.")
    if not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise ValueError(f"labels_per_class must be a positive int, got {labels_per_class!r}.")
    if data == "digits":
        (x_train, y_train), (x_test, y_test) = datasets.load_digits(seed=seed)
    else:
        (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(fashion_path)
    source_classes, target_classes = tuple(range(5)), tuple(range(5, 10))
    rng = np.random.default_rng(seed)

    def subset(x, y, classes, per_class=None, limit=None):
        index = np.flatnonzero(np.isin(y, classes))
        if per_class is not None:
            index = np.concatenate(
                [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in classes]
            )
        if limit is not None and len(index) > limit:
            index = rng.choice(index, limit, replace=False)
        index = np.sort(index)
        return x[index], (y[index] - classes[0]).astype("int32")

    available = min(int(np.sum(y_train == c)) for c in target_classes)
    if labels_per_class > available:
        raise ValueError(
            f"labels_per_class={labels_per_class} exceeds the {available} training "
            f"images of the smallest target class in {data!r}."
        )
    return TransferTask(
        name=data,
        source_train=subset(x_train, y_train, source_classes, limit=source_limit),
        source_test=subset(x_test, y_test, source_classes),
        target_train=subset(x_train, y_train, target_classes, per_class=labels_per_class),
        target_test=subset(x_test, y_test, target_classes),
        target_unlabelled=subset(x_train, y_train, target_classes)[0],
        source_classes=source_classes,
        target_classes=target_classes,
    )
