"""The `keras-transfer` command line."""

import argparse
import os
import sys


def _demo(args):
    from keras_transfer import demo

    settings = demo.default_settings(args.data)
    changes = {}
    if args.labels_per_class is not None:
        changes["labels_per_class"] = args.labels_per_class
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.quiet:
        changes["verbose"] = 0
    if changes:
        import dataclasses

        settings = dataclasses.replace(settings, **changes)
    report = demo.run_demo(
        args.data,
        out=args.out,
        settings=settings,
        overwrite=args.overwrite,
        fashion_path=args.fashion_path,
    )
    print()
    print(report.table())
    print()
    for kind, path in report.files.items():
        print(f"{kind:>15}: {os.path.relpath(path)}")
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
    demo.add_argument("--data", choices=("digits", "fashion_mnist"), default="digits",
                      help="digits ships with scikit-learn (no download); default: digits")
    demo.add_argument("--out", default="export", help="output folder (default: export)")
    demo.add_argument("--labels-per-class", type=int, default=None,
                      help="labelled target images per class (default: 10)")
    demo.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    demo.add_argument("--fashion-path", default=None,
                      help="folder with the Fashion-MNIST IDX files (default: Debian's, then keras)")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace the files of an earlier run in the same folder")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        print(f"keras-transfer {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
