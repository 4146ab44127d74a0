"""Proxy A-distance (Ben-David et al. 2007): how well a classifier tells two domains apart."""

import numpy as np

from keras_transfer._checks import require_finite


def proxy_a_distance(source_features, target_features, seed=0, C=1.0):
    """2·(1 − 2·err) of a linear domain classifier, trained on half the data, tested on half.

    0 means the domains cannot be told apart; 2 means they are perfectly
    separable. Features are flattened and standardised; the classifier is
    scikit-learn's logistic regression (the paper used a linear SVM).

    Args:
        source_features: (n, ...) source features (or inputs).
        target_features: (m, ...) target features, same shape per sample.
        seed: seed of the split.
        C: inverse regularisation strength of the classifier.

    Returns:
        A float; slightly below 0 is possible when err > 0.5 by chance.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 3.0
    >>> proxy_a_distance(a, b) > 1.9
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    source = np.asarray(source_features, dtype="float32")
    target = np.asarray(target_features, dtype="float32")
    for name, array in (("source_features", source), ("target_features", target)):
        if array.ndim < 2 or len(array) < 2:
            raise ValueError(
                f"{name} needs at least 2 samples with a feature axis; got shape {array.shape}."
            )
        require_finite(array, name)
    if source.shape[1:] != target.shape[1:]:
        raise ValueError(
            f"source_features have shape {source.shape[1:]} per sample, target_features "
            f"{target.shape[1:]}; they must match."
        )
    x = np.concatenate([source.reshape(len(source), -1), target.reshape(len(target), -1)])
    y = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[: len(x) // 2], order[len(x) // 2 :]
    scaler = StandardScaler().fit(x[train])
    classifier = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(x[train]), y[train])
    error = float(np.mean(classifier.predict(scaler.transform(x[test])) != y[test]))
    return 2.0 * (1.0 - 2.0 * error)
