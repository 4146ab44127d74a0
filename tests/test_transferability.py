"""LogME against a numpy reference; LEEP against its definition; both rank features sensibly."""

import numpy as np
import pytest

from keras_transfer.transferability import leep
from keras_transfer.transferability import logme


def reference_logme(f, labels, iterations=200):
    """The evidence with explicit matrices: A = alpha I + beta FᵀF, m = beta A⁻¹ Fᵀ y."""
    n, d = f.shape
    values = []
    for k in range(labels.max() + 1):
        y = (labels == k).astype(float)
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            a = alpha * np.eye(d) + beta * f.T @ f
            m = beta * np.linalg.solve(a, f.T @ y)
            gamma = d - alpha * np.trace(np.linalg.inv(a))
            alpha, beta = gamma / (m @ m), (n - gamma) / np.sum((f @ m - y) ** 2)
        a = alpha * np.eye(d) + beta * f.T @ f
        m = beta * np.linalg.solve(a, f.T @ y)
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - alpha / 2 * m @ m
            - beta / 2 * np.sum((f @ m - y) ** 2)
            - 0.5 * np.linalg.slogdet(a)[1]
            - n / 2 * np.log(2 * np.pi)
        )
        values.append(evidence / n)
    return float(np.mean(values))


@pytest.mark.parametrize("rank_deficient", [False, True])  # FᵀF with a zero eigenvalue too
def test_logme_matches_the_explicit_reference(rng, rank_deficient):
    n, d = 60, 5
    labels = rng.integers(0, 3, n)
    f = rng.normal(size=(n, d)) + 0.8 * np.eye(3)[labels] @ rng.normal(size=(3, d))
    if rank_deficient:
        f = np.concatenate([f, f[:, :1]], axis=1)
    assert logme(f, labels, max_iterations=200, tolerance=1e-12) == pytest.approx(
        reference_logme(f, labels), rel=1e-6
    )


def test_logme_prefers_features_that_carry_the_labels(rng, digits):
    (x, y), _ = digits
    flat = x.reshape(len(x), -1)
    assert logme(flat, y) > logme(rng.normal(size=flat.shape), y)


def test_leep_matches_its_definition(rng):
    theta = rng.dirichlet(np.ones(4), size=50)
    labels = rng.integers(0, 3, 50)
    joint = np.zeros((3, 4))
    for row, label in zip(theta, labels):
        joint[label] += row / 50
    conditional = joint / joint.sum(axis=0)
    want = np.mean(
        [
            np.log(sum(conditional[label, z] * row[z] for z in range(4)))
            for row, label in zip(theta, labels)
        ]
    )
    assert leep(theta, labels) == pytest.approx(want, rel=1e-10)


def test_leep_is_higher_for_a_source_model_that_predicts_the_labels(rng):
    labels = rng.integers(0, 3, 300)
    informative = 0.1 + 0.7 * np.eye(3)[labels]
    informative /= informative.sum(axis=1, keepdims=True)
    uninformative = rng.dirichlet(np.ones(3), size=300)
    assert leep(informative, labels) > leep(uninformative, labels)
    assert leep(informative, labels) <= 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="apply softmax"):
        leep(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="labels must have shape"):
        logme(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="more samples than feature dimensions"):
        logme(np.zeros((12, 20)), np.zeros(12, dtype=int))
    with pytest.raises(ValueError, match="non-empty"):
        logme(np.zeros((0, 2)), np.zeros(0, dtype=int))
