"""The demo's transfer task: clean scanned images are the source domain, the same classes
photographed under uneven light the target domain, with a few labels and many unlabelled images.
"""

import dataclasses

import numpy as np

from keras_transfer import datasets

DATASETS = ("digits", "fashion_mnist")
SHIFT = "uneven light"


@dataclasses.dataclass(frozen=True)
class TransferTask:
    """Source and target splits of one dataset; both domains share the classes."""

    name: str
    source_train: tuple
    source_test: tuple
    target_train: tuple
    target_test: tuple
    target_unlabelled: np.ndarray
    classes: tuple
    shift: str = SHIFT

    @property
    def input_shape(self):
        return self.source_train[0].shape[1:]


def make_task(data="digits", labels_per_class=5, seed=0, images_per_domain=None, fashion_path=None):
    """Splits a dataset into a labelled source domain and a shifted target domain.

    The training images are split in two halves at random: the first half, as
    it is and labelled, is the source domain; the second half under uneven
    light (`datasets.uneven_light`, a brightness ramp of random strength) is the
    target domain, of which only `labels_per_class` images per class keep their
    labels. The test images give a clean source test set and, under their own
    uneven light, the target test set.

    Args:
        data: "digits" (bundled with scikit-learn) or "fashion_mnist".
        labels_per_class: labelled target training images kept per class.
        seed: seed of the split, the light and the labelled subset.
        images_per_domain: keep at most this many training images per domain (None: all).
        fashion_path: optional folder with the Fashion-MNIST IDX files.

    Returns:
        A `TransferTask`.

    Example:
    >>> task = make_task("digits", labels_per_class=5)
    >>> len(task.target_train[0]), len(task.classes)
    (50, 10)
    """
    if data not in DATASETS:
        raise ValueError(f"data must be one of {DATASETS}, got {data!r}.")
    if not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise ValueError(f"labels_per_class must be a positive int, got {labels_per_class!r}.")
    if data == "digits":
        (x_train, y_train), (x_test, y_test) = datasets.load_digits(seed=seed)
    else:
        (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(fashion_path)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_train))
    source, target = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    if images_per_domain is not None:
        source = np.sort(rng.choice(source, min(images_per_domain, len(source)), replace=False))
        target = np.sort(rng.choice(target, min(images_per_domain, len(target)), replace=False))
    x_target = datasets.uneven_light(x_train[target], seed + 1)
    y_target = y_train[target]
    classes = tuple(int(c) for c in np.unique(y_train))
    available = min(int(np.sum(y_target == c)) for c in classes)
    if labels_per_class > available:
        raise ValueError(
            f"labels_per_class={labels_per_class} exceeds the {available} target training "
            f"images of the smallest class in {data!r}."
        )
    labelled = np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(y_target == c), labels_per_class, replace=False)
             for c in classes]
        )
    )  # fmt: skip
    return TransferTask(
        name=data,
        source_train=(x_train[source], y_train[source]),
        source_test=(x_test, y_test),
        target_train=(x_target[labelled], y_target[labelled]),
        target_test=(datasets.uneven_light(x_test, seed + 2), y_test),
        target_unlabelled=x_target,
        classes=classes,
    )
