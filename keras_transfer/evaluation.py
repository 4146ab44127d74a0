"""Classification reports and the pictures users look at: confusion matrix, curves, embeddings."""

import dataclasses

import numpy as np

from keras_transfer._checks import require_finite
from keras_transfer._files import atomic_file
from keras_transfer._files import check_target


@dataclasses.dataclass
class ClassificationReport:
    """Metrics of one set of predictions. Per-class lists follow class index order."""

    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    roc_auc_ovr: float
    precision: list
    recall: list
    f1: list
    support: list
    confusion_matrix: np.ndarray
    class_names: list

    def as_dict(self):
        data = dataclasses.asdict(self)
        data["confusion_matrix"] = self.confusion_matrix.tolist()
        return data


def _scores(model_or_outputs, x):
    if hasattr(model_or_outputs, "predict"):
        if x is None:
            raise ValueError("data must be (x, y) when a model is given.")
        return np.asarray(model_or_outputs.predict(x, batch_size=512, verbose=0), dtype="float64")
    return np.asarray(model_or_outputs, dtype="float64")


def _probabilities(scores):
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        return scores
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))  # logits -> softmax
    return shifted / shifted.sum(axis=1, keepdims=True)


def _binary_auc(scores, positives):
    """Area under the ROC curve: P(a positive scores above a negative), ties counted half."""
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_report(model_or_outputs, data, class_names=None):
    """Accuracy, macro and per-class precision/recall/F1, one-vs-rest ROC AUC, confusion matrix.

    Args:
        model_or_outputs: a Keras model (run on `data[0]`), or its (n, classes)
            outputs: logits or probabilities.
        data: (x, y) with integer labels y, or y alone when outputs are given.
        class_names: optional names, one per class.

    Returns:
        A `ClassificationReport`. Classes never predicted get precision 0
        (as scikit-learn's zero_division=0); ROC AUC is the macro mean over
        classes present in y.

    Example:
    >>> logits = np.array([[2.0, 0.1], [0.3, 1.0], [1.0, 0.0]])
    >>> report = classification_report(logits, np.array([0, 1, 1]))
    >>> round(report.accuracy, 3), report.confusion_matrix.tolist()
    (0.667, [[1, 0], [1, 1]])
    """
    if isinstance(data, tuple):
        x, y = data
    else:
        x, y = None, data
    scores = require_finite(_scores(model_or_outputs, x), "outputs of model_or_outputs")
    y = np.asarray(y)
    if scores.ndim != 2 or len(scores) != len(y) or len(y) == 0:
        raise ValueError(
            f"outputs must be (n, classes) for n = {len(y)} labels; got shape {scores.shape}."
        )
    classes = scores.shape[1]
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= classes:
        raise ValueError(
            f"labels must be integers in [0, {classes}); got range [{y.min()}, {y.max()}]."
        )
    if class_names is not None and len(class_names) != classes:
        raise ValueError(
            f"class_names must name the {classes} classes of the outputs; got {len(class_names)}."
        )
    predicted = scores.argmax(axis=1)
    matrix = np.zeros((classes, classes), dtype="int64")
    np.add.at(matrix, (y, predicted), 1)
    true_positive = np.diag(matrix).astype("float64")
    predicted_count, actual_count = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(
        true_positive, predicted_count, out=np.zeros(classes), where=predicted_count > 0
    )
    recall = np.divide(true_positive, actual_count, out=np.zeros(classes), where=actual_count > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(classes), where=total > 0)
    present = actual_count > 0
    probabilities = _probabilities(scores)
    aucs = [_binary_auc(probabilities[:, c], y == c) for c in range(classes) if present[c]]
    return ClassificationReport(
        accuracy=float(np.mean(predicted == y)),
        precision_macro=float(precision[present].mean()),
        recall_macro=float(recall[present].mean()),
        f1_macro=float(f1[present].mean()),
        roc_auc_ovr=float(np.nanmean(aucs)),
        precision=precision.tolist(),
        recall=recall.tolist(),
        f1=f1.tolist(),
        support=actual_count.tolist(),
        confusion_matrix=matrix,
        class_names=list(class_names) if class_names else [str(c) for c in range(classes)],
    )


def _save_figure(figure, path, overwrite):
    import matplotlib.pyplot as plt

    path = check_target(path, overwrite, "png")
    try:
        with atomic_file(path, suffix=".png", overwrite=overwrite, kind="png") as temporary:
            figure.savefig(temporary, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(report, path, overwrite=False):
    """Writes the report's confusion matrix as a PNG (counts in the cells). Returns the path."""
    plt = _pyplot()
    matrix = report.confusion_matrix
    figure, axis = plt.subplots(figsize=(1 + 0.6 * len(matrix), 0.8 + 0.6 * len(matrix)))
    axis.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            color="white" if count > matrix.max() / 2 else "black",
            fontsize=8,
        )
    axis.set_xticks(range(len(matrix)), report.class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(matrix)), report.class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"accuracy {report.accuracy:.3f}")
    return _save_figure(figure, path, overwrite)


def plot_history(history, path, overwrite=False):
    """Writes training curves (every logged value per epoch, losses and the rest apart) as a PNG."""
    logs = history.history if hasattr(history, "history") else dict(history)
    if not logs:
        raise ValueError("history has no logged values.")
    plt = _pyplot()
    figure, (losses, others) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, values in logs.items():
        (losses if "loss" in name else others).plot(range(1, len(values) + 1), values, label=name)
    for axis, title in ((losses, "losses"), (others, "metrics")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        if axis.lines:
            axis.legend(fontsize=8)
    return _save_figure(figure, path, overwrite)


def embed_2d(features, method="pca", seed=0):
    """Projects (n, d) features to 2-D: "pca" (numpy SVD) or "tsne" (scikit-learn)."""
    features = np.asarray(features, dtype="float64").reshape(len(features), -1)
    if method == "pca":
        centred = features - features.mean(axis=0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        return centred @ components[:2].T
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, random_state=seed, init="pca").fit_transform(features)
    raise ValueError(f"method must be 'pca' or 'tsne'; got {method!r}.")


def plot_domain_embedding(panels, path, method="pca", overwrite=False):
    """Source and target features in 2-D, coloured by domain, one panel per stage.

    Args:
        panels: {title: (source_features, target_features)}, e.g. {"before":
            ..., "after adaptation": ...}. Each panel is embedded on its own.
        path: the PNG to write.
        method: "pca" or "tsne".

    Returns:
        The path written.
    """
    if not panels:
        raise ValueError("panels is empty; pass {title: (source_features, target_features)}.")
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for axis, (title, (source, target)) in zip(axes[0], panels.items()):
        points = embed_2d(np.concatenate([np.asarray(source), np.asarray(target)]), method)
        axis.scatter(*points[: len(source)].T, s=4, alpha=0.5, label="source")
        axis.scatter(*points[len(source) :].T, s=4, alpha=0.5, label="target")
        axis.set_title(title)
        axis.legend(markerscale=3)
    return _save_figure(figure, path, overwrite)
