"""Does each stage of `keras-transfer demo` beat (or match) its baseline on every seed?

Runs the demo's stages with their default settings over seeds 0-4 and reports,
for each row with a baseline, on how many seeds its claim holds and its gain
over the baseline (mean ± std over seeds), with the demo's wall time per seed
(median). Whether a claim holds is judged from the stored accuracies by the
library's current rule (`keras_transfer.demo.report.holds`). Each seed's
report is written to results/demo_seeds.json as soon as it is measured, so a
stopped run keeps what it measured, and a rerun measures only the seeds missing
(`--fresh` starts over).

python examples/benchmarks/demo_seeds.py [--data digits] [--seeds 0 1 2 3 4] [--fresh]
python examples/benchmarks/demo_seeds.py --table    # the README's markdown, from the JSON

About 5 minutes for the five digits seeds on 2 cores.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
PATH = os.path.join(RESULTS, "demo_seeds.json")


def load():
    if not os.path.exists(PATH):
        return {}
    with open(PATH) as f:
        return json.load(f)


def save(results):
    os.makedirs(RESULTS, exist_ok=True)
    with open(PATH + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(PATH + ".tmp", PATH)


def judged(run):
    """A stored run's orderings, `holds` judged again by the library's current rule."""
    from keras_transfer.demo.report import DemoReport
    from keras_transfer.demo.settings import DemoSettings
    from keras_transfer.demo.settings import StageResult

    rows = [StageResult(**row) for row in run["rows"]]
    return DemoReport(run["data"], rows, {}, DemoSettings(**run["settings"])).orderings()


def summary(runs):
    """Per ordering: seeds where it holds, gain mean and std, accuracies' means."""
    rows = {}
    for run in runs:
        for ordering in judged(run):
            rows.setdefault(ordering["stage"], []).append(ordering)
    table = []
    for stage, orderings in rows.items():
        gains = np.array([o["gain"] for o in orderings])
        agreements = [o["agreement"] for o in orderings if o["agreement"] is not None]
        table.append({
            "stage": stage, "claim": orderings[0]["claim"], "baseline": orderings[0]["baseline"],
            "seeds": len(orderings), "holds": sum(o["holds"] for o in orderings),
            "accuracy_mean": float(np.mean([o["accuracy"] for o in orderings])),
            "baseline_mean": float(np.mean([o["baseline_accuracy"] for o in orderings])),
            "gain_mean": float(gains.mean()), "gain_std": float(gains.std()),
            "agreement_min": min(agreements) if agreements else None,
        })  # fmt: skip
    return table


def markdown(results, data):
    runs = [results[data][seed] for seed in sorted(results.get(data, {}), key=int)]
    lines = [
        "| row | claim | baseline | accuracy | baseline accuracy | gain (mean ± std) | holds on "
        "| lowest agreement |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in summary(runs):
        agreement = "" if row["agreement_min"] is None else f"{row['agreement_min']:.3f}"
        lines.append(
            f"| {row['stage']} | {row['claim']} | {row['baseline']} | {row['accuracy_mean']:.3f} "
            f"| {row['baseline_mean']:.3f} | {row['gain_mean']:+.3f} ± {row['gain_std']:.3f} "
            f"| {row['holds']} of {row['seeds']} | {agreement} |"
        )
    seconds = [run["seconds"] for run in runs]
    lines.append("")
    lines.append(
        f"Seeds {', '.join(sorted(results.get(data, {}), key=int))}; the demo's stages took "
        f"{np.median(seconds):.0f} s per seed (median; {min(seconds):.0f}-{max(seconds):.0f})."
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="digits", choices=("digits", "fashion_mnist"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--fresh", action="store_true", help="forget earlier seeds' results")
    parser.add_argument("--table", action="store_true", help="print the README table and stop")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    results = {} if args.fresh else load()
    if args.table:
        print(markdown(results, args.data))
        return 0
    import dataclasses

    from keras_transfer import demo

    for seed in args.seeds:
        if str(seed) in results.get(args.data, {}):
            continue
        settings = dataclasses.replace(demo.default_settings(args.data), seed=seed, verbose=0)
        with tempfile.TemporaryDirectory() as out:
            report = demo.run_demo(args.data, out=out, settings=settings)
        results.setdefault(args.data, {})[str(seed)] = report.to_json()
        save(results)
        held = sum(o["holds"] for o in report.orderings())
        print(f"seed {seed}: {held} of {len(report.orderings())} hold, {report.seconds:.0f} s")
        for o in report.orderings():
            verdict = "" if o["holds"] else "FAILS"
            print(f"  {o['stage']:<30} {o['gain']:+.3f} vs {o['baseline']} {verdict}")
        sys.stdout.flush()
    print(markdown(results, args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
