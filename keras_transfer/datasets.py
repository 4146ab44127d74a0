"""Real datasets that work offline, and source/target pairing for `tf.data`.

Every loader returns images as float32 in [0, 1] with a trailing channel axis and
labels as int32, the layout Keras convolution layers expect. The library takes
paths; it never assumes where a caller keeps its data.
"""

import gzip
import os

import numpy as np
import tensorflow as tf

from keras_transfer._checks import require_number
from keras_transfer.domains import domain_pairs  # noqa: F401  (its first home)

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IDX_UBYTE = 0x08
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def load_digits(test_fraction=0.25, seed=0):
    """Loads scikit-learn's bundled 8x8 digits, split per class with a fixed seed.

    Args:
        test_fraction: share of each class held out for testing, in (0, 1).
        seed: seed of the split; the same seed gives the same split.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: images float32 in [0, 1] of shape
        (n, 8, 8, 1), labels int32 in 0-9.

    Example:
    >>> (x_train, y_train), (x_test, y_test) = load_digits(seed=0)
    >>> x_train.shape[1:], x_train.dtype.name
    ((8, 8, 1), 'float32')
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}.")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images / 16.0).astype("float32")[..., None]
    y = bunch.target.astype("int32")
    train_index, test_index = stratified_split(y, test_fraction, seed)
    return (x[train_index], y[train_index]), (x[test_index], y[test_index])


def stratified_split(labels, test_fraction, seed):
    """Indices of a per-class random split: `(train_index, test_index)`, both sorted."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def read_idx(path):
    """Reads an IDX file of unsigned bytes (MNIST layout), gzip-compressed or not.

    Args:
        path: the `.gz` or uncompressed IDX file.

    Returns:
        A uint8 numpy array with the shape the header declares.

    Example:
    >>> labels = read_idx("t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path!r}.")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read(4)
            if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE:
                raise ValueError(
                    f"{path!r} is not an IDX file of unsigned bytes: its first bytes are "
                    f"{data[:4].hex() or 'missing'}, expected 0000 08 followed by the rank."
                )
            rank = data[3]
            header = 4 + 4 * rank
            data += f.read(4 * rank)
            shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
            expected = header + int(np.prod(shape))
            # No more than the header declares (and one byte to see padding): a small gzip file
            # that inflates far past its declared size is not read into memory whole.
            data += f.read(expected - len(data) + 1)
    except (OSError, EOFError) as error:
        raise ValueError(f"{path!r} is not a readable IDX file: {error}.") from error
    if len(data) != expected:
        raise ValueError(
            f"{path!r} is truncated or padded: its header declares shape {shape} "
            f"({expected} bytes), the file has {'more' if len(data) > expected else len(data)} "
            "bytes."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(folder, stem):
    for name in (stem + ".gz", stem):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"{stem}(.gz) not found in {folder!r}; expected the standard MNIST-layout files."
    )


def _load_idx_split(folder, split, argument):
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{argument} must be a folder of IDX files, got {folder!r}.")
    prefix = _SPLIT_PREFIX[split]
    images = read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"The {split} files in {folder!r} do not match: images {images.shape}, "
            f"labels {labels.shape}; expected (n, rows, cols) images and n labels."
        )
    return _as_images(images), labels.astype("int32")


def _as_images(uint8_images):
    return (uint8_images.astype("float32") / 255.0)[..., None]


def load_mnist(path, split="test"):
    """Loads MNIST from a folder of the standard IDX files.

    Args:
        path: folder holding `t10k-images-idx3-ubyte.gz` and
            `t10k-labels-idx1-ubyte.gz` (and the `train-*` pair for `split="train"`).
        split: "test" or "train".

    Returns:
        `(x, y)`: images float32 in [0, 1] of shape (n, 28, 28, 1), labels int32.

    Example:
    >>> x, y = load_mnist("data/mnist")  # doctest: +SKIP
    """
    return _load_idx_split(path, split, "path")


def load_fashion_mnist(path=None):
    """Loads Fashion-MNIST from a folder, Debian's package, or the Keras download.

    The first source that exists wins: `path` (an error if given and missing),
    the files of Debian's `dataset-fashion-mnist` package, then
    `keras.datasets.fashion_mnist` (its cache, or a download).

    Args:
        path: optional folder with the four standard IDX files.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: images float32 in [0, 1] of shape
        (n, 28, 28, 1), labels int32 in 0-9 (`FASHION_MNIST_CLASSES` names them).

    Example:
    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()  # doctest: +SKIP
    """
    if path is not None:
        return _load_idx_split(path, "train", "path"), _load_idx_split(path, "test", "path")
    if os.path.isdir(DEBIAN_FASHION_MNIST):
        return (
            _load_idx_split(DEBIAN_FASHION_MNIST, "train", "path"),
            _load_idx_split(DEBIAN_FASHION_MNIST, "test", "path"),
        )
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # the download raises several types offline
        raise FileNotFoundError(
            "Fashion-MNIST was not found: pass path= to a folder with its four IDX "
            "files, install Debian's package (`apt-get install dataset-fashion-mnist`), "
            f"or connect to the internet for keras.datasets. The download said: {error}"
        ) from error
    return (_as_images(x_train), y_train.astype("int32")), (
        _as_images(x_test),
        y_test.astype("int32"),
    )


def load_usps(path, split="train"):
    """Loads the USPS digits from the HDF5 packaging (`usps.h5`).

    Args:
        path: the `usps.h5` file, or a folder that holds it.
        split: "train" (7,291 images) or "test" (2,007 images).

    Returns:
        `(x, y)`: images float32 in [0, 1] of shape (n, 16, 16, 1), labels int32.

    Example:
    >>> x, y = load_usps("data/usps/usps.h5", split="test")  # doctest: +SKIP
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if os.path.isdir(path):
        path = os.path.join(path, "usps.h5")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"path must be the usps.h5 file or its folder; {path!r} does not exist."
        )
    import h5py

    try:
        with h5py.File(path, "r") as f:
            data = np.asarray(f[split]["data"], dtype="float32")
            target = np.asarray(f[split]["target"])
    except (OSError, KeyError) as error:
        raise ValueError(
            f"{path!r} is not the USPS HDF5 file: expected groups 'train' and 'test' "
            f"with 'data' and 'target' ({error})."
        ) from error
    if data.ndim != 2 or data.shape[1] != 256 or len(data) != len(target):
        raise ValueError(
            f"{path!r} split {split!r} holds data {data.shape} and target "
            f"{target.shape}; expected (n, 256) and (n,)."
        )
    whole = np.all(np.isfinite(target)) and np.all(np.mod(target, 1) == 0)
    if target.ndim != 1 or not whole or target.min() < 0 or target.max() > 9:
        raise ValueError(
            f"{path!r} split {split!r} holds targets outside the digits 0-9 "
            f"(range {target.min()} to {target.max()}); it is not the USPS file."
        )
    return np.clip(data, 0.0, 1.0).reshape(-1, 16, 16, 1), target.astype("int32")


def load_mnist_m(path):
    """Loads the MNIST-M test split (Ganin & Lempitsky 2015): MNIST digits over photo patches.

    Image i is MNIST test image i drawn over colour: pair it with MNIST on
    disjoint index ranges (e.g. MNIST test 0-4,499 as source, MNIST-M
    4,500-9,000 as target).

    Args:
        path: the `mnist_m_test.npz` file (arrays `x` uint8 (n, 32, 32, 3) and
            `y`), or a folder that holds it.

    Returns:
        `(x, y)`: images float32 in [0, 1] of shape (n, 32, 32, 3), labels int32.

    Example:
    >>> x, y = load_mnist_m("data/mnist_m")  # doctest: +SKIP
    """
    if os.path.isdir(path):
        path = os.path.join(path, "mnist_m_test.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"path must be mnist_m_test.npz or its folder; {path!r} does not exist."
        )
    with np.load(path, allow_pickle=False) as arrays:
        if "x" not in arrays or "y" not in arrays:
            raise ValueError(f"{path!r} must hold arrays 'x' and 'y'; it holds {arrays.files}.")
        x, y = arrays["x"], arrays["y"]
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or len(x) != len(y):
        raise ValueError(
            f"{path!r} holds x {x.shape} and y {y.shape}; expected (n, 32, 32, 3) and (n,)."
        )
    return (x.astype("float32") / 255.0), y.astype("int32")


def resize_images(x, size, channels=None, pad=0):
    """Resizes a batch of images (bilinear, antialiased) and sets its channel count.

    Args:
        x: array of shape (n, height, width, channels).
        size: `(height, width)` of the result.
        channels: 1 or 3, or None to keep the input's. Grey becomes RGB by
            repetition and RGB becomes grey by luminance.
        pad: zero pixels added on every side before resizing. USPS digits fill
            their 16x16 frame while MNIST's sit in the middle 20x20 of 28x28:
            `pad=3` (16 -> 22 -> 28) puts a USPS digit in MNIST's frame, as the
            CoGAN, SHOT and MCD code do. It is worth 72 -> 91% to a LeNet
            trained on 2,000 MNIST images and tested on USPS (seed 0).

    Returns:
        float32 numpy array of shape (n, size[0], size[1], channels).

    Example:
    >>> x = resize_images(np.zeros((2, 16, 16, 1), "float32"), (28, 28), channels=3)
    >>> x.shape
    (2, 28, 28, 3)
    >>> float(resize_images(np.ones((1, 16, 16, 1), "float32"), (28, 28), pad=3)[0, 0, 0, 0])
    0.0
    """
    x = _check_images(x, "x")
    pad = require_number(pad, "pad", integer=True)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (height, width) of positive ints, got {size!r}.")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}.")
    images = tf.convert_to_tensor(x, tf.float32)
    if pad:
        images = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    if tuple(images.shape[1:3]) != tuple(size):
        images = tf.image.resize(images, size, method="bilinear", antialias=True)
    if channels is not None and channels != x.shape[-1]:
        if x.shape[-1] not in (1, 3):
            raise ValueError(f"x must have 1 or 3 channels to convert, got {x.shape[-1]}.")
        images = (
            tf.image.grayscale_to_rgb(images)
            if channels == 3
            else tf.image.rgb_to_grayscale(images)
        )
    return images.numpy()


def to_common_shape(*image_arrays, size=None, channels=None):
    """Brings several image batches (e.g. two digit domains) to one input shape.

    Args:
        *image_arrays: arrays of shape (n, height, width, channels).
        size: target `(height, width)`; default the largest height and width given.
        channels: target channel count; default the largest given.

    Returns:
        A list of float32 arrays, one per input, all of one shape past the batch axis.

    Example:
    >>> mnist_like, usps_like = to_common_shape(
    ...     np.zeros((3, 28, 28, 1)), np.zeros((5, 16, 16, 1)))
    >>> usps_like.shape
    (5, 28, 28, 1)
    """
    if not image_arrays:
        raise ValueError("to_common_shape needs at least one image array.")
    arrays = [_check_images(x, f"image_arrays[{i}]") for i, x in enumerate(image_arrays)]
    if size is None:
        size = (max(x.shape[1] for x in arrays), max(x.shape[2] for x in arrays))
    if channels is None:
        channels = max(x.shape[3] for x in arrays)
    return [resize_images(x, size, channels) for x in arrays]


def uneven_light(x, seed):
    """Images under a top-to-bottom brightness ramp of random strength (0 to 0.8 of full scale).

    A real-looking shift for images in [0, 1] (a phone under a lamp): the demo's target domain.

    Args:
        x: (n, height, width, channels) images in [0, 1].
        seed: seed of each image's ramp strength.

    Returns:
        float32 images of the same shape, never darker than `x`.

    Example:
    >>> lit = uneven_light(np.zeros((2, 4, 4, 1), "float32"), seed=0)
    >>> bool(lit[:, 0].max() == 0.0 and lit[:, -1].min() > 0.0)
    True
    """
    rng = np.random.default_rng(seed)
    strength = 0.8 * rng.uniform(0.0, 1.0, (len(x), 1, 1, 1))
    ramp = np.linspace(0.0, 1.0, x.shape[1])[None, :, None, None]
    return np.maximum(x, strength * ramp).astype("float32")


def _check_images(x, name):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (n, height, width, channels), got {x.shape}.")
    if len(x) == 0:
        raise ValueError(f"{name} is empty; expected at least one image.")
    return x
