"""The `keras-transfer` command line."""

import argparse
import contextlib
import os
import sys
import textwrap

from keras_transfer._quiet import native_stderr_silenced


def _quiet_tensorflow():
    """TensorFlow's C++ start-up logs, its Python log below errors (retracing notices) and
    Python warnings off, unless -v asks for them."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _demo(args):
    from keras_transfer import demo

    settings = demo.default_settings(args.data)
    changes = {}
    if args.labels_per_class is not None:
        changes["labels_per_class"] = args.labels_per_class
    if args.seed is not None:
        changes["seed"] = args.seed
    if not args.verbose:
        changes["verbose"] = 0  # one line per stage below, not Keras' bar per epoch
    if changes:
        import dataclasses

        settings = dataclasses.replace(settings, **changes)

    progress = None if args.quiet or args.verbose else demo.StageProgress(sys.stdout)
    report = demo.run_demo(
        args.data,
        out=args.out,
        settings=settings,
        overwrite=args.overwrite,
        fashion_path=args.fashion_path,
        progress=progress,
    )
    print()
    print(report.table())
    print()
    orderings = report.orderings()
    failed = [o for o in orderings if not o["holds"]]
    print(
        f"{len(orderings) - len(failed)} of {len(orderings)} stages beat or "
        f"match their baseline (vs: the row it is measured against); {report.seconds:.0f} s."
        + "".join(f"\n  not this time: {o['stage']} vs {o['baseline']}" for o in failed)
    )
    print()
    folder = os.path.dirname(report.files["json"])
    names = sorted(os.path.relpath(path, folder) for path in report.files.values())
    print(f"Written to {os.path.relpath(folder)}{os.sep}:")
    print(textwrap.fill(", ".join(names), width=100, initial_indent="  ", subsequent_indent="  "))
    return 0


def _train(args):
    from keras_transfer.demo.progress import StageProgress
    from keras_transfer.images.run import train_from_folder

    training = {
        name: getattr(args, name)
        for name in ("epochs", "batch_size")
        if getattr(args, name) is not None
    }
    training["augment"] = args.augment
    if args.unlabelled:
        training["adapter"] = args.adapter
    if args.flip:
        training["flip"] = True
    progress = None if args.quiet else StageProgress(sys.stdout)  # -v: TensorFlow's logs too
    run = train_from_folder(
        args.photos,
        out=args.out,
        unlabelled=args.unlabelled,
        backbone=args.backbone,
        weights=args.weights,
        student=args.student,
        quantization=args.quantize,
        qat=args.qat,
        image_size=args.image_size and tuple(args.image_size),
        on_bad_file="skip" if args.skip_bad_files else "error",
        test_directory=args.test,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=progress,
        **training,
    )
    report = run.report
    print()
    if report["skipped_files"]:
        print(f"Skipped {len(report['skipped_files'])} bad files (listed in report.json).")
    for split, value in report["keras_accuracy"].items():
        line = f"  {split:<12} {report['images'][split]:>6} images  Keras accuracy {value:.4f}"
        if split in report.get("tflite_accuracy", {}):
            line += f"  .tflite {report['tflite_accuracy'][split]:.4f}"
        print(line)
    tflite = report.get("tflite")
    if tflite:
        print(
            f"  {tflite['file']} ({args.quantize}, {tflite['size_bytes'] / 1024:.0f} KiB) on "
            f"{report['evaluated_on']}: accuracy {tflite['accuracy']:.4f}, agrees with the Keras "
            f"model on {tflite['agreement_with_keras']:.2%}, {tflite['latency_median_ms']:.2f} ms"
        )
    print(
        f"Written to {args.out}{os.sep}: "
        + ", ".join(sorted(os.path.basename(p) for p in run.files.values()))
    )
    return 0


def _predict(args):
    from keras_transfer.images.deploy import predict_images

    labels = None
    if args.labels:
        with open(args.labels) as f:
            labels = [line.strip() for line in f if line.strip()]
    results = predict_images(args.model, args.images, top_k=args.top_k, labels=labels)
    for path, top in zip(args.images, results):
        print(f"{path}: " + ", ".join(f"{name} {score:.3f}" for name, score in top))
    return 0


def _load_npz(path, argument, key="x"):
    import zipfile

    import numpy as np

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{argument} file not found: {path!r}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, AttributeError) as error:
        raise ValueError(
            f"{argument} {path!r} is not a readable .npz file of arrays: {error}"
        ) from error
    if key not in arrays:
        raise ValueError(f"{argument} {path!r} has no array {key!r}; it has {sorted(arrays)}.")
    return arrays[key], arrays.get("y")


def _load_keras_model(path, unsafe):
    import zipfile

    import keras

    if not os.path.isfile(path):
        raise FileNotFoundError(f"MODEL file not found: {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(f"MODEL must be a .keras file saved by model.save(), got {path!r}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"MODEL {path!r} is not a valid .keras archive (not a zip file).")
    from keras_transfer._checks import require_keras_archive

    require_keras_archive(path, "MODEL")
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except ValueError as error:
        if "safe_mode" in str(error) or "unsafe" in str(error).lower():
            raise ValueError(
                f"MODEL {path!r} holds code (e.g. a Lambda layer) that safe mode refuses to "
                "load. Pass --unsafe only if you trust where the file came from."
            ) from error
        raise


def _export(args):
    from keras_transfer import export

    model = _load_keras_model(args.model, args.unsafe)
    stem = os.path.splitext(os.path.basename(args.model))[0]
    if args.format == "saved_model":
        if args.quantize != "none":
            raise ValueError("--quantize applies to --format tflite only.")
        report = export.export_saved_model(
            model, os.path.join(args.out, f"{stem}_saved_model"), overwrite=args.overwrite
        )
    else:
        calibration = None
        if args.calibration is not None:
            calibration, _ = _load_npz(args.calibration, "--calibration", args.key)
        suffix = "" if args.quantize == "none" else f"_{args.quantize}"
        report = export.export_tflite(
            model,
            os.path.join(args.out, f"{stem}{suffix}.tflite"),
            quantization=args.quantize,
            representative_data=calibration,
            overwrite=args.overwrite,
        )
    print(report)
    return 0


def _evaluate(args):
    from keras_transfer import export

    x, y = _load_npz(args.data, "--data", args.key)
    if y is not None and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # (n, 1) labels compared with (n,) predictions would broadcast to (n, n)
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise ValueError(
            f"--data y must hold one label per example, shape ({len(x)},); got {y.shape}."
        )
    if args.keras is not None:
        model = _load_keras_model(args.keras, args.unsafe)
        print(export.compare(args.model, model, (x, y) if y is not None else x))
    else:
        scores = export.tflite_predict(args.model, x, num_threads=args.threads)
        line = f"{len(x)} examples"
        if y is not None:
            line += f": accuracy {float((scores.argmax(-1) == y).mean()):.4f}"
        print(line)
    print(export.benchmark_tflite(args.model, threads=args.threads, runs=args.runs))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer",
        description="Transfer learning for Keras 3 on TensorFlow.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a source model, transfer it to a target task with few labels, export it",
    )
    demo.add_argument(
        "--data",
        choices=("digits", "fashion_mnist"),
        default="digits",
        help="digits ships with scikit-learn (no download); default: digits",
    )
    demo.add_argument("--out", default="export", help="output folder (default: export)")
    demo.add_argument(
        "--labels-per-class",
        type=int,
        default=None,
        help="labelled target images per class (default: 5)",
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    demo.add_argument(
        "--fashion-path",
        default=None,
        help="folder with the Fashion-MNIST IDX files (default: Debian's, then keras)",
    )
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files of an earlier run in the same folder",
    )
    demo.add_argument("--quiet", action="store_true", help="only the table and the files")
    demo.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="Keras' progress bars and TensorFlow's logs (default: one line per stage)",
    )
    demo.set_defaults(run=_demo)

    exporter = commands.add_parser("export", help="export a .keras model as SavedModel or TFLite")
    exporter.add_argument("model", help="the .keras file")
    exporter.add_argument("--format", choices=("saved_model", "tflite"), default="tflite")
    exporter.add_argument(
        "--quantize",
        choices=("none", "dynamic", "float16", "int8"),
        default="none",
        help="TFLite quantization (default: none)",
    )
    exporter.add_argument(
        "--calibration", help=".npz with typical inputs under 'x' (int8 needs it)"
    )
    exporter.add_argument("--key", default="x", help="array name of the inputs in the .npz")
    exporter.add_argument("--out", default="export", help="output folder (default: export)")
    exporter.add_argument("--overwrite", action="store_true", help="replace existing output")
    exporter.add_argument(
        "--unsafe",
        action="store_true",
        help="allow code in the .keras file (Lambda layers); only for trusted files",
    )
    exporter.set_defaults(run=_export)

    evaluate = commands.add_parser(
        "evaluate", help="accuracy, parity and latency of a .tflite file"
    )
    evaluate.add_argument("model", help="the .tflite file")
    evaluate.add_argument(
        "--data", required=True, help=".npz with inputs 'x' and optional labels 'y'"
    )
    evaluate.add_argument("--key", default="x", help="array name of the inputs in the .npz")
    evaluate.add_argument("--keras", help="the .keras model it came from, for a parity check")
    evaluate.add_argument("--threads", type=int, default=1)
    evaluate.add_argument("--runs", type=int, default=100, help="timed single-example calls")
    evaluate.add_argument("--unsafe", action="store_true", help="see export --unsafe")
    evaluate.set_defaults(run=_evaluate)

    train = commands.add_parser(
        "train",
        help="a folder of images (one sub-folder per class) to a .keras model and an int8 .tflite",
    )
    train.add_argument("photos", help="folder with one sub-folder of images per class")
    train.add_argument("--out", required=True, help="output folder (a rerun continues it)")
    train.add_argument("--unlabelled", help="folder of unlabelled images from where it will run")
    train.add_argument(
        "--adapter",
        choices=("adabn", "tent", "shot"),
        default="adabn",
        help="how --unlabelled adapts the model (default: adabn)",
    )
    train.add_argument("--test", help="another labelled folder (same classes) to report on")
    train.add_argument(
        "--backbone",
        help="keras.applications name, .keras file or SavedModel/TF-Hub folder "
        "(default: a compact CNN trained from scratch, no download)",
    )
    train.add_argument("--weights", help="backbone weights: 'imagenet' (downloads) or a file")
    train.add_argument("--student", help="distil into this network: compact_cnn or a name")
    train.add_argument(
        "--quantize",
        choices=("int8", "float16", "dynamic", "none"),
        default="int8",
        help="the .tflite's quantization (default: int8)",
    )
    train.add_argument("--qat", action="store_true", help="quantization-aware training (int8)")
    train.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="resize to this (default: the first image's size, at most 224)",
    )
    train.add_argument("--epochs", type=int, help="training epochs (default: 40)")
    train.add_argument("--batch-size", type=int)
    train.add_argument(
        "--augment",
        choices=("shift", "full", "none"),
        default="shift",
        help="random shifts (default), + rotations and zooms (full), or none",
    )
    train.add_argument("--flip", action="store_true", help="also random horizontal flips")
    train.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="leave out unreadable or non-image files (default: stop and name them)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--overwrite", action="store_true", help="restart a run in --out made with other settings"
    )
    train.add_argument("--quiet", action="store_true", help="only the summary")
    train.add_argument("-v", "--verbose", action="store_true", help="TensorFlow's logs too")
    train.set_defaults(run=_train)

    predict = commands.add_parser("predict", help="top classes of images from a .keras/.tflite")
    predict.add_argument("model", help="a .keras or .tflite classifier")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--labels", help="labels.txt (default: metadata or labels.txt beside)")
    predict.set_defaults(run=_predict)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    if not verbose:
        _quiet_tensorflow()
    try:
        with contextlib.nullcontext() if verbose else native_stderr_silenced():
            return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        print(f"keras-transfer {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
