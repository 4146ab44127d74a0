"""The demo's report: the table printed, its JSON and its figure."""

import dataclasses
import json
import os

import numpy as np

from keras_transfer._files import atomic_file
from keras_transfer.demo.settings import MATCH_AGREEMENT
from keras_transfer.demo.settings import MATCH_POINTS
from keras_transfer.demo.settings import DemoSettings


def accuracy(logits, labels):
    """Top-1 accuracy of scores or logits against integer labels."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def agreement(outputs, reference):
    """How often two models' outputs pick the same class."""
    return float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))


def holds(row, baseline):
    """Whether `row` shows what its `claim` says against `baseline` (a `StageResult`)."""
    gain = row.accuracy - baseline.accuracy
    if row.claim == "beats":
        return gain > 0
    if row.claim == "at least":
        return gain >= 0
    if row.claim == "matches":
        return gain >= -MATCH_POINTS - 1e-9 and (row.agreement or 0.0) >= MATCH_AGREEMENT
    raise ValueError(f"claim must be 'beats', 'at least' or 'matches', got {row.claim!r}.")


@dataclasses.dataclass
class DemoReport:
    """What a demo run measured and wrote."""

    data: str
    rows: list
    files: dict
    settings: DemoSettings
    adaptation: dict = dataclasses.field(default_factory=dict)
    seconds: float = None

    def baseline_of(self, row):
        """The row `row` is measured against, or None."""
        return next((other for other in self.rows if other.stage == row.baseline), None)

    def orderings(self):
        """Each row's claim against its baseline: claim, accuracies, gain, and whether it holds."""
        result = []
        for row in self.rows:
            baseline = self.baseline_of(row)
            if baseline is None:
                continue
            result.append({
                "stage": row.stage, "claim": row.claim, "baseline": baseline.stage,
                "accuracy": row.accuracy, "baseline_accuracy": baseline.accuracy,
                "gain": row.accuracy - baseline.accuracy, "agreement": row.agreement,
                "holds": holds(row, baseline),
            })  # fmt: skip
        return result

    def table(self):
        """The rows as a fixed-width text table; "vs" gives the gain over the baseline's row."""
        header = ("", "stage", "evaluated on", "accuracy", "vs baseline", "agreement",
                  "parameters", "file", "seconds")  # fmt: skip
        number = {row.stage: i + 1 for i, row in enumerate(self.rows)}
        lines = [header]
        for i, row in enumerate(self.rows):
            baseline = self.baseline_of(row)
            lines.append((
                str(i + 1),
                row.stage,
                row.evaluated_on,
                f"{row.accuracy:.3f}",
                "" if baseline is None
                else f"{row.accuracy - baseline.accuracy:+.3f} vs {number[baseline.stage]}",
                "" if row.agreement is None else f"{row.agreement:.3f}",
                "" if row.parameters is None else f"{row.parameters:,}",
                "" if row.file_bytes is None else f"{row.file_bytes / 1024:.1f} KiB",
                "" if row.seconds is None else f"{row.seconds:.1f}",
            ))  # fmt: skip
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                for line in lines]  # fmt: skip
        text.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(text)

    def to_json(self):
        import keras
        import tensorflow as tf

        from keras_transfer import __version__

        return {
            "data": self.data,
            "seed": self.settings.seed,
            "versions": {
                "keras_transfer": __version__,
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
            },  # fmt: skip
            "seconds": self.seconds,
            "settings": dataclasses.asdict(self.settings),
            "rows": [dataclasses.asdict(row) for row in self.rows],
            "orderings": self.orderings(),
            "files": self.files,
            "adaptation": self.adaptation,
        }


def write_json(payload, path):
    with atomic_file(path) as temporary, open(temporary, "w") as f:
        json.dump(payload, f, indent=2)


def plot_report(report, path):
    """Draws accuracy and file size per stage side by side and saves a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [row.stage for row in report.rows]
    colours = ["#999999" if row.evaluated_on != "target test" else "#2a6f97" for row in report.rows]
    left.barh(names, [row.accuracy for row in report.rows], color=colours)
    left.set_xlim(0, 1)
    left.set_xlabel("accuracy (grey: source test, blue: target test)")
    left.invert_yaxis()
    for i, row in enumerate(report.rows):
        left.text(
            row.accuracy - 0.01,
            i,
            f"{row.accuracy:.3f}",
            va="center",
            ha="right",
            color="white",
            fontweight="bold",
        )
    sized = [row for row in report.rows if row.file_bytes]
    labels = [row.stage + (" (.keras)" if row.parameters else "") for row in sized]
    right.barh(labels, [row.file_bytes / 1024 for row in sized], color="#e07a5f")
    right.set_xlabel("file size (KiB)")
    right.invert_yaxis()
    figure.suptitle(
        f"keras-transfer demo on {report.data}: {report.settings.labels_per_class} "
        "labelled images per target class"
    )
    figure.tight_layout()
    staging = path + ".tmp.png"
    figure.savefig(staging, dpi=100)
    plt.close(figure)
    os.replace(staging, path)
