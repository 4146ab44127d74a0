"""Instance re-weighting: importance weights p_target(x)/p_source(x) for source samples."""

import numpy as np

from keras_transfer._checks import require_finite


def importance_weights(source, target, clip=(0.1, 10.0), C=1.0, seed=0):
    """Weights for source samples from a domain classifier (discriminative density-ratio estimate).

    A logistic regression learns P(target | x); w(x) = P(target|x)/P(source|x)
    · n_source/n_target estimates p_target(x)/p_source(x). Weights are clipped
    and rescaled to mean 1, ready for `fit(..., sample_weight=w)` on the source.

    Args:
        source: (n, ...) source inputs or features.
        target: (m, ...) target inputs or features (no labels).
        clip: (low, high) bounds of the weights before rescaling, or None.
        C: inverse regularisation strength of the domain classifier.
        seed: seed of the classifier's solver.

    Returns:
        A float32 array of n weights with mean 1.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> source = rng.normal(size=(500, 1)); target = rng.normal(size=(500, 1)) + 1.0
    >>> w = importance_weights(source, target)
    >>> bool(w[source[:, 0] > 1].mean() > w[source[:, 0] < -1].mean())
    True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    source = np.asarray(source, dtype="float32")
    target = np.asarray(target, dtype="float32")
    for name, array in (("source", source), ("target", target)):
        if array.ndim < 2 or len(array) == 0:
            raise ValueError(
                f"{name} must be a non-empty array of samples with a feature axis; "
                f"got shape {array.shape}."
            )
        require_finite(array, name)
    if source.shape[1:] != target.shape[1:]:
        raise ValueError(
            f"source has shape {source.shape[1:]} per sample, target {target.shape[1:]}; "
            "they must match."
        )
    x = np.concatenate([source.reshape(len(source), -1), target.reshape(len(target), -1)])
    y = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    scaler = StandardScaler().fit(x)
    classifier = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(
        scaler.transform(x), y
    )
    p_target = classifier.predict_proba(scaler.transform(x[: len(source)]))[:, 1]
    weights = p_target / np.maximum(1.0 - p_target, 1e-6) * (len(source) / len(target))
    if clip is not None:
        weights = np.clip(weights, clip[0], clip[1])
    return (weights / weights.mean()).astype("float32")


def importance_weighted_risk(
    source_losses, source_features, target_features, clip=(0.1, 10.0), seed=0
):
    """Target risk estimated from labelled source validation data: choose adaptation settings
    without target labels.

    The mean of per-sample source validation losses, each weighted by the
    density ratio p_target/p_source of its features (`importance_weights`,
    self-normalised to mean 1): importance-weighted validation (Sugiyama et al.
    2007), as in Deep Embedded Validation (You et al. 2019), whose control
    variate is what the normalisation does here. Lower is better.

    Args:
        source_losses: (n,) losses of the model on held-out labelled source samples.
        source_features: (n, ...) the model's features of those samples.
        target_features: (m, ...) its features of unlabelled target samples.
        clip: bounds of the weights before normalisation, or None.
        seed: seed of the domain classifier.

    Returns:
        A float: the estimated target loss.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> source = rng.normal(size=(600, 1)); target = rng.normal(size=(600, 1)) + 1.5
    >>> losses = (source[:, 0] > 1).astype(float)  # the model fails where the target lives
    >>> bool(importance_weighted_risk(losses, source, target) > 2 * losses.mean())
    True
    """
    losses = np.asarray(source_losses, dtype="float64").reshape(-1)
    if len(losses) != len(source_features):
        raise ValueError(
            f"source_losses has {len(losses)} values for {len(source_features)} source_features; "
            "expected one loss per sample."
        )
    require_finite(losses, "source_losses")
    weights = importance_weights(source_features, target_features, clip=clip, seed=seed)
    return float(np.mean(weights * losses))
