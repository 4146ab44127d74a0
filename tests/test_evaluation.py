"""classification_report against scikit-learn on real predictions; the figures as PNG files."""

import numpy as np
import pytest
from sklearn import metrics

from keras_transfer.evaluation import classification_report
from keras_transfer.evaluation import embed_2d
from keras_transfer.evaluation import plot_confusion_matrix
from keras_transfer.evaluation import plot_domain_embedding
from keras_transfer.evaluation import plot_history

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assert_matches_sklearn(report, logits, y):
    predicted = logits.argmax(1)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y, predicted, labels=range(logits.shape[1]), zero_division=0
    )
    present = support > 0
    assert report.accuracy == pytest.approx(metrics.accuracy_score(y, predicted))
    np.testing.assert_allclose(report.precision, precision, atol=1e-12)
    np.testing.assert_allclose(report.recall, recall, atol=1e-12)
    np.testing.assert_allclose(report.f1, f1, atol=1e-12)
    assert report.f1_macro == pytest.approx(f1[present].mean())
    np.testing.assert_array_equal(
        report.confusion_matrix,
        metrics.confusion_matrix(y, predicted, labels=range(logits.shape[1])),
    )
    assert report.roc_auc_ovr == pytest.approx(
        metrics.roc_auc_score(
            y, softmax(logits), multi_class="ovr", average="macro", labels=range(logits.shape[1])
        ),
        rel=1e-9,
    )


def test_report_of_a_trained_model_matches_scikit_learn(trained_digits_model, digits):
    _, (x_test, y_test) = digits
    report = classification_report(trained_digits_model, (x_test, y_test))
    assert_matches_sklearn(
        report, trained_digits_model.predict(x_test, verbose=0).astype("float64"), y_test
    )
    assert report.accuracy > 0.8 and sum(report.support) == len(y_test)


def test_report_with_a_never_predicted_class_and_ties_matches_scikit_learn(rng):
    y = rng.integers(0, 4, 200)
    logits = np.round(rng.normal(size=(200, 4)), 1)  # rounded: ties in the scores
    logits[:, 3] -= 10.0  # class 3 is never predicted
    report = classification_report(logits, y)
    assert report.precision[3] == 0.0
    assert_matches_sklearn(report, logits, y)


def test_bad_outputs_and_labels():
    with pytest.raises(ValueError, match="labels must be integers in"):
        classification_report(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="outputs must be"):
        classification_report(np.zeros((3, 2)), np.array([0, 1]))


def test_figures_are_written_as_png_and_not_overwritten(trained_digits_model, digits, tmp_path):
    (x_train, _), (x_test, y_test) = digits
    report = classification_report(trained_digits_model, (x_test, y_test))
    history = {"loss": [2.0, 1.0, 0.5], "accuracy": [0.3, 0.6, 0.8]}
    features = trained_digits_model.predict(x_test, verbose=0)
    written = [
        plot_confusion_matrix(report, tmp_path / "confusion.png"),
        plot_history(history, tmp_path / "curves.png"),
        plot_domain_embedding(
            {"before": (features, features + 3.0), "after": (features, features)},
            tmp_path / "embedding.png",
        ),
    ]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE
        assert (tmp_path / path).stat().st_size > 5_000
    with pytest.raises(FileExistsError, match="overwrite=True"):
        plot_history(history, tmp_path / "curves.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion.png",
        "curves.png",
        "embedding.png",
    ]


def test_pca_embedding_keeps_the_two_directions_of_largest_variance(rng):
    features = rng.normal(size=(300, 5)) * np.array([10.0, 5.0, 0.1, 0.1, 0.1])
    points = embed_2d(features)
    assert points.shape == (300, 2)
    assert np.var(points[:, 0]) == pytest.approx(np.var(features[:, 0]), rel=0.05)
    assert np.var(points[:, 1]) == pytest.approx(np.var(features[:, 1]), rel=0.05)
