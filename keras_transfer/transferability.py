"""Transferability estimates, to pick a source model before fine-tuning: LogME and LEEP."""

import numpy as np

from keras_transfer._checks import require_finite


def _check(features_or_probs, labels, name):
    values = np.asarray(features_or_probs, dtype="float64")
    labels = np.asarray(labels)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"{name} must be a non-empty (n, d) array; got shape {values.shape}.")
    require_finite(values, name)
    if labels.shape != (len(values),):
        raise ValueError(
            f"labels must have shape ({len(values)},) to match {name}; got {labels.shape}."
        )
    if labels.dtype.kind not in "iu" or labels.min() < 0:
        raise ValueError("labels must be non-negative integers.")
    return values, labels.astype("int64")


def logme(features, labels, max_iterations=100, tolerance=1e-6):
    """LogME (You et al. 2021): mean log evidence of a Bayesian linear model on the features.

    For each class, y = one-hot column, prior w ~ N(0, 1/alpha), noise
    N(0, 1/beta); alpha and beta maximise the evidence by MacKay's fixed
    point (gamma = sum beta·s_i/(alpha + beta·s_i), alpha = gamma/|m|²,
    beta = (n − gamma)/|F m − y|², s_i the eigenvalues of FᵀF). Higher means
    the features suit the labels better. Divided by n, averaged over classes.

    Args:
        features: (n, d) features of the target data from a candidate backbone.
        labels: (n,) integer target labels.
        max_iterations, tolerance: of the fixed point.

    Returns:
        A float.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 300)
    >>> good = np.eye(3)[y] + 0.1 * rng.normal(size=(300, 3))
    >>> bool(logme(good, y) > logme(rng.normal(size=(300, 3)), y))
    True
    """
    f, labels = _check(features, labels, "features")
    n, d = f.shape
    if n <= d:
        raise ValueError(
            f"logme needs more samples than feature dimensions; got n={n}, d={d}. With n <= d a "
            "linear model fits any labelling exactly and the evidence says nothing: reduce d "
            "(e.g. PCA) or add samples."
        )
    u, singular, _ = np.linalg.svd(f, full_matrices=False)
    sigma = np.zeros(d)
    sigma[: len(singular)] = singular**2  # eigenvalues of FᵀF, zeros beyond rank
    evidences = []
    for k in range(labels.max() + 1):
        y = (labels == k).astype("float64")
        projected = np.zeros(d)
        projected[: u.shape[1]] = u.T @ y  # coordinates of y in F's column space
        outside = max(float(y @ y - projected @ projected), 0.0)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iterations):
            shrink = alpha + beta * sigma
            gamma = float(np.sum(beta * sigma / shrink))
            m2 = float(np.sum(beta**2 * sigma * projected**2 / shrink**2))  # |m|²
            residual = float(np.sum(alpha**2 * projected**2 / shrink**2)) + outside  # |F m − y|²
            new_alpha, new_beta = gamma / (m2 + 1e-10), (n - gamma) / (residual + 1e-10)
            converged = (
                abs(new_alpha - alpha) / alpha < tolerance
                and abs(new_beta - beta) / beta < tolerance
            )
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        shrink = alpha + beta * sigma
        m2 = float(np.sum(beta**2 * sigma * projected**2 / shrink**2))
        residual = float(np.sum(alpha**2 * projected**2 / shrink**2)) + outside
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - alpha / 2 * m2
            - beta / 2 * residual
            - 0.5 * np.sum(np.log(shrink))
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def leep(source_probabilities, labels):
    """LEEP (Nguyen et al. 2020): log expected empirical prediction of a source classifier.

    With theta(x) the source model's distribution over its own classes z:
    P(y, z) = mean_i theta(x_i)_z·[y_i = y], P(y|z) = P(y, z)/P(z), and
    LEEP = mean_i log sum_z P(y_i|z)·theta(x_i)_z. Closer to 0 is better.

    Args:
        source_probabilities: (n, source classes) softmax outputs of the
            source model on the target inputs (rows sum to 1).
        labels: (n,) integer target labels.

    Returns:
        A float <= 0.

    Example:
    >>> theta = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> round(leep(theta, np.array([0, 1])), 4)
    -0.2911
    """
    theta, labels = _check(source_probabilities, labels, "source_probabilities")
    if np.any(theta < 0) or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(
            "source_probabilities must be probabilities (rows >= 0 summing to 1); "
            "apply softmax to logits first."
        )
    n = len(theta)
    joint = np.zeros((labels.max() + 1, theta.shape[1]))
    np.add.at(joint, labels, theta / n)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-12)  # P(y|z)
    expected = np.sum(conditional[labels] * theta, axis=1)
    return float(np.mean(np.log(np.maximum(expected, 1e-12))))
