"""Writes real digit images as folders of PNG/JPEG files, one sub-folder per class.

    python examples/image_folders.py OUT [--per-class 300] [--data ../shared/data]

OUT/photos/0..9: MNIST-M (MNIST digits over colour photo patches, RGB 32x32), test indices
0-4,499; OUT/unlabelled: MNIST-M test 4,500-8,999 under uneven light (no labels); OUT/shifted:
the same images, labelled, to test on; OUT/new/: a few held-out images to predict.
"""

import argparse
import os

import numpy as np
import tensorflow as tf

from keras_transfer.datasets import load_mnist_m
from keras_transfer.datasets import uneven_light


def write(images, folder, names, fmt="png"):
    os.makedirs(folder, exist_ok=True)
    for image, name in zip(images, names):
        pixels = tf.constant(np.clip(np.round(image * 255), 0, 255).astype(np.uint8))
        data = tf.io.encode_png(pixels) if fmt == "png" else tf.io.encode_jpeg(pixels, quality=95)
        tf.io.write_file(os.path.join(folder, f"{name}.{fmt}"), data)


def make_folders(out, data="../shared/data", per_class=300, seed=0):
    x, y = load_mnist_m(os.path.join(data, "mnist_m"))
    rng = np.random.default_rng(seed)
    source = np.arange(0, 4500)
    target = np.arange(4500, 9000)
    shifted = uneven_light(x[target], seed)
    for label in range(10):
        members = source[y[source] == label]
        chosen = rng.permutation(members)[:per_class]
        write(x[chosen], os.path.join(out, "photos", str(label)), [f"{i}" for i in chosen])
        held_out = rng.permutation(target[y[target] == label])[:1]
        write(x[held_out], os.path.join(out, "new"), [f"digit{label}_{held_out[0]}"], "jpg")
    write(shifted, os.path.join(out, "unlabelled"), [f"{i}" for i in target])
    for label in range(10):
        members = np.flatnonzero(y[target] == label)
        write(shifted[members], os.path.join(out, "shifted", str(label)), [f"{i}" for i in members])
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--data", default="../shared/data")
    args = parser.parse_args()
    print(make_folders(args.out, args.data, args.per_class))
