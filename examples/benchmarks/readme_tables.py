"""Prints the README's benchmark tables as markdown, from the JSON files in results/.

python examples/benchmarks/readme_tables.py
"""

import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def load(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def import_table(data):
    m, s = data["median_seconds"], data["seconds"]
    lines = ["| import | median (s) | min (s) | max (s) |", "|---|---:|---:|---:|"]
    for name in ("tensorflow, keras", "keras_transfer"):
        lines.append(
            f"| `import {name}` | {m[name]:.3f} | {min(s[name]):.3f} | {max(s[name]):.3f} |"
        )
    lines.append(f"| keras_transfer on top | **{data['extra_seconds']:.3f}** | | budget 0.300 |")
    return "\n".join(lines)


def distill_table(data):
    lines = [
        "| row | test accuracy % | uneven-light test % | gap closed | epoch s | vs student epoch + "
        "teacher predict | vs student epoch | max abs logit diff vs one device |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def percent(row, key):
        mean = row.get(f"{key}_mean")
        return "" if mean is None else f"{100 * mean:.2f} ± {100 * row[f'{key}_std']:.2f}"

    def number(value, form):
        return "" if value is None else format(value, form)

    for name, row in data["rows"].items():
        closed = "" if row["gap_closed"] is None else f"{100 * row['gap_closed']:.0f}%"
        times = "x" if row["epoch_seconds_median"] else ""
        lines.append(
            f"| {name} | {percent(row, 'accuracy')} | {percent(row, 'shifted_accuracy')} | "
            f"{closed} | {number(row['epoch_seconds_median'], '.2f')} | "
            f"{number(row['ratio_to_student_plus_teacher_predict'], '.2f')}{times} | "
            f"{number(row['ratio_to_student_epoch'], '.2f')}{times} | "
            f"{number(row.get('max_logit_diff_vs_one_device'), '.1e')} |"
        )
    return "\n".join(lines)


def export_table(data):
    lines = [
        "| model | accuracy % | vs Keras (points) | top-1 agreement | file | size vs float32 | "
        "latency ms (XNNPACK) | vs float32 | latency ms (builtin kernels) | vs float32 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in data["rows"].items():
        lines.append(
            f"| {name} | {100 * row['accuracy']:.2f} | {row['accuracy_minus_keras_points']:+.2f} | "
            f"{row['agreement']:.4f} | {row['bytes'] / 1024:.1f} KiB | "
            f"{row['size_vs_tflite_float32']:.2f}x | {row['latency_ms']:.4f} | "
            f"{row['latency_vs_tflite_float32']:.2f}x | "
            + (
                f"{row['latency_builtin_kernels_ms']:.4f} | "
                f"{row['builtin_latency_vs_tflite_float32']:.2f}x |"
                if "latency_builtin_kernels_ms" in row
                else " | |"
            )
        )
    return "\n".join(lines)


def main():
    for name, render in (
        ("import_time.json", import_table),
        ("distill.json", distill_table),
        ("export.json", export_table),
    ):
        data = load(name)
        print(f"<!-- {name} -->")
        print(render(data) if data else "(not run yet)")
        print()


if __name__ == "__main__":
    main()
