"""Loaders on the real files, resizing helpers and `domain_pairs`."""

import gzip
import os

import numpy as np
import pytest

from keras_transfer import datasets
from keras_transfer import domain_pairs
from keras_transfer import load_digits
from keras_transfer import load_fashion_mnist
from keras_transfer import load_mnist
from keras_transfer import load_usps
from keras_transfer import resize_images
from keras_transfer import to_common_shape
from tests.conftest import shared_path

# Class counts 0-9 as the data READMEs in ../shared/data state them.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
USPS_TRAIN_COUNTS = [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]
USPS_TEST_COUNTS = [359, 264, 198, 166, 200, 160, 170, 147, 166, 177]


def assert_images(x, shape):
    assert x.dtype == np.float32
    assert x.shape[1:] == shape
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() > 0.9, "images should use the full [0, 1] range"


# --- digits -------------------------------------------------------------------


def test_digits_shapes_ranges_and_stratified_split():
    (x_train, y_train), (x_test, y_test) = load_digits(test_fraction=0.25, seed=0)
    assert_images(x_train, (8, 8, 1))
    assert_images(x_test, (8, 8, 1))
    assert len(x_train) + len(x_test) == 1797
    assert y_train.dtype == np.int32 and set(np.unique(y_test)) == set(range(10))
    test_share = np.bincount(y_test) / (np.bincount(y_test) + np.bincount(y_train))
    np.testing.assert_allclose(test_share, 0.25, atol=0.01)


def test_digits_split_is_fixed_by_seed():
    (a, _), _ = load_digits(seed=3)
    (b, _), _ = load_digits(seed=3)
    (c, _), _ = load_digits(seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_digits_train_and_test_are_disjoint():
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits().images.reshape(1797, -1)
    (x_train, _), (x_test, _) = load_digits(seed=0)
    train_rows = {tuple(r) for r in (x_train.reshape(len(x_train), -1) * 16).round()}
    test_rows = [tuple(r) for r in (x_test.reshape(len(x_test), -1) * 16).round()]
    duplicated_in_raw = len(raw) - len({tuple(r) for r in raw})
    assert sum(r in train_rows for r in test_rows) <= duplicated_in_raw


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_digits_rejects_bad_test_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=fraction)


# --- IDX files, MNIST and Fashion-MNIST -------------------------------------------


def test_mnist_test_set_matches_its_readme():
    x, y = load_mnist(shared_path("mnist"), split="test")
    assert_images(x, (28, 28, 1))
    assert y.dtype == np.int32
    assert np.bincount(y).tolist() == MNIST_TEST_COUNTS


def test_mnist_missing_split_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(shared_path("mnist"), split="train")
    with pytest.raises(FileNotFoundError, match="path must be a folder"):
        load_mnist(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_mnist(shared_path("mnist"), split="validation")


def write_idx(path, array, magic_type=0x08):
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trips_and_rejects_corrupt_files(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    good = tmp_path / "good.gz"
    write_idx(good, array)
    np.testing.assert_array_equal(datasets.read_idx(str(good)), array)

    wrong_type = tmp_path / "float.gz"
    write_idx(wrong_type, array, magic_type=0x0D)
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        datasets.read_idx(str(wrong_type))

    truncated = tmp_path / "truncated.gz"
    with gzip.open(truncated, "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in (2, 3, 4)) + b"x")
    with pytest.raises(ValueError, match="truncated or padded"):
        datasets.read_idx(str(truncated))

    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match="not a readable IDX file"):
        datasets.read_idx(str(not_gzip))

    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        datasets.read_idx(str(tmp_path / "missing.gz"))


def test_mismatched_images_and_labels_are_rejected(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(ValueError, match="do not match"):
        load_mnist(str(tmp_path))


def fashion_folder():
    if not os.path.isdir(datasets.DEBIAN_FASHION_MNIST):
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    return datasets.DEBIAN_FASHION_MNIST


def test_fashion_mnist_from_debian_package():
    fashion_folder()
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    assert_images(x_train, (28, 28, 1))
    assert_images(x_test, (28, 28, 1))
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10


def test_fashion_mnist_from_a_given_folder_equals_the_default(tmp_path):
    folder = fashion_folder()
    for name in os.listdir(folder):
        os.symlink(os.path.join(folder, name), tmp_path / name)
    (_, _), (x_test, y_test) = load_fashion_mnist(str(tmp_path))
    (_, _), (x_default, y_default) = load_fashion_mnist()
    np.testing.assert_array_equal(x_test, x_default)
    np.testing.assert_array_equal(y_test, y_default)


def test_fashion_mnist_missing_everywhere_says_how_to_get_it(tmp_path, monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", str(tmp_path / "no-debian"))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()
    with pytest.raises(FileNotFoundError, match="path must be a folder"):
        load_fashion_mnist(str(tmp_path / "given-but-missing"))


# --- USPS -----------------------------------------------------------------------


def test_usps_splits_match_their_readme():
    path = shared_path("usps", "usps.h5")
    x_train, y_train = load_usps(path, split="train")
    x_test, y_test = load_usps(os.path.dirname(path), split="test")
    assert_images(x_train, (16, 16, 1))
    assert_images(x_test, (16, 16, 1))
    assert np.bincount(y_train).tolist() == USPS_TRAIN_COUNTS
    assert np.bincount(y_test).tolist() == USPS_TEST_COUNTS


def test_usps_bad_paths_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="usps.h5"):
        load_usps(str(tmp_path))
    bogus = tmp_path / "usps.h5"
    bogus.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="is not the USPS HDF5 file"):
        load_usps(str(bogus))
    with pytest.raises(ValueError, match="split must be"):
        load_usps(shared_path("usps", "usps.h5"), split="all")


# --- one input shape for two domains ---------------------------------------------


def test_resize_keeps_content_and_converts_channels():
    grey = np.full((2, 16, 16, 1), 0.5, "float32")
    rgb = resize_images(grey, (28, 28), channels=3)
    assert rgb.shape == (2, 28, 28, 3) and rgb.dtype == np.float32
    np.testing.assert_allclose(rgb, 0.5, atol=1e-6)
    back = resize_images(rgb, (28, 28), channels=1)
    np.testing.assert_allclose(back, 0.5, atol=1e-3)


def test_resize_moves_a_digit_to_the_same_place():
    image = np.zeros((1, 16, 16, 1), "float32")
    image[0, 4:12, 7:9] = 1.0  # a vertical stroke in the middle
    big = resize_images(image, (32, 32))[0, ..., 0]
    columns = big.sum(axis=0)
    assert abs(np.average(np.arange(32), weights=columns) - 15.5) < 0.5
    assert big.max() <= 1.0 + 1e-6


def test_to_common_shape_brings_mnist_and_usps_together():
    mnist, _ = load_mnist(shared_path("mnist"))
    usps, _ = load_usps(shared_path("usps", "usps.h5"))
    a, b = to_common_shape(mnist[:5], usps[:7])
    assert a.shape == (5, 28, 28, 1) and b.shape == (7, 28, 28, 1)
    np.testing.assert_array_equal(a, mnist[:5])
    (c,) = to_common_shape(usps[:3], size=(20, 20), channels=3)
    assert c.shape == (3, 20, 20, 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: resize_images(np.zeros((2, 8, 8)), (4, 4)), "x must have shape"),
        (lambda: resize_images(np.zeros((0, 8, 8, 1)), (4, 4)), "x is empty"),
        (lambda: resize_images(np.zeros((1, 8, 8, 1)), (0, 4)), "size must be"),
        (lambda: resize_images(np.zeros((1, 8, 8, 1)), (4, 4), channels=2), "channels must be"),
        (lambda: resize_images(np.zeros((1, 8, 8, 2)), (4, 4), channels=3), "1 or 3 channels"),
        (lambda: to_common_shape(), "at least one"),
        (
            lambda: to_common_shape(np.zeros((1, 8, 8, 1)), np.zeros((3, 8, 8))),
            r"image_arrays\[1\]",
        ),
    ],
)
def test_resize_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- domain_pairs ------------------------------------------------------------------


def small_domains():
    (x, y), (x_target, _) = load_digits(seed=0)
    return (x[:100], y[:100]), x_target[:37]


def epoch_of(dataset):
    return [(y.numpy().tolist(), x_t.numpy().sum()) for (x_s, y), x_t in dataset]


def test_domain_pairs_batch_structure_and_epoch_length():
    source, target = small_domains()
    pairs = domain_pairs(source, target, batch_size=16, seed=0)
    batches = list(pairs)
    assert len(batches) == 7  # ceil(100 / 16): the longer domain sets the epoch
    for (x_s, y_s), x_t in batches:
        assert tuple(x_s.shape) == (16, 8, 8, 1)
        assert tuple(y_s.shape) == (16,)
        assert tuple(x_t.shape) == (16, 8, 8, 1)
    seen = np.concatenate([y.numpy() for (_, y), _ in batches])
    assert len(seen) == 112


def test_domain_pairs_sees_the_longer_domain_whole_each_epoch():
    (x, _), target = small_domains()
    ids = np.arange(100, dtype=np.int32)  # the labels carry each example's index
    pairs = domain_pairs((x, ids), target, batch_size=16, seed=1)
    for _ in range(2):
        seen = np.concatenate([y.numpy() for (_, y), _ in pairs])
        assert set(seen.tolist()) == set(range(100))


def test_domain_pairs_is_reproducible_with_a_seed():
    source, target = small_domains()
    first = domain_pairs(source, target, batch_size=16, seed=5)
    second = domain_pairs(source, target, batch_size=16, seed=5)
    other = domain_pairs(source, target, batch_size=16, seed=6)
    first_epochs = [epoch_of(first), epoch_of(first)]
    assert first_epochs == [epoch_of(second), epoch_of(second)]
    assert first_epochs[0] != first_epochs[1], "each epoch should be reshuffled"
    assert epoch_of(other) != first_epochs[0]


def test_domain_pairs_feeds_keras_fit():
    import keras

    source, target = small_domains()
    pairs = domain_pairs(source, target, batch_size=16, seed=0)
    as_supervised = pairs.map(lambda s, t: s)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(as_supervised, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


@pytest.mark.parametrize(
    "source, target, kwargs, message",
    [
        ((np.zeros((4, 8, 8, 1)), np.zeros(4, int)), np.zeros((4, 16, 16, 1)), {}, "share a shape"),
        ((np.zeros((0, 8)), np.zeros(0, int)), np.zeros((4, 8)), {}, "source inputs are empty"),
        ((np.zeros((4, 8)), np.zeros(4, int)), np.zeros((0, 8)), {}, "target inputs are empty"),
        (
            (np.zeros((4, 8)), np.zeros(4, int)),
            (np.zeros((4, 8)), np.zeros(4)),
            {},
            "Target labels",
        ),
        ((np.zeros((4, 8)), np.zeros(3, int)), np.zeros((4, 8)), {}, "3 labels for 4 inputs"),
        ((np.zeros((4, 8)), np.array([0, 1, -1, 2])), np.zeros((4, 8)), {}, "negative class"),
        ((np.zeros((4, 8)), np.zeros(4, float)), np.zeros((4, 8)), {}, "integer class indices"),
        ((np.zeros((4, 8)), np.zeros(4, int)), np.zeros((4, 8)), {"batch_size": 0}, "batch_size"),
        (np.zeros((4, 8)), np.zeros((4, 8)), {}, "source must be a pair"),
    ],
)
def test_domain_pairs_rejects_bad_input(source, target, kwargs, message):
    with pytest.raises(ValueError, match=message):
        domain_pairs(source, target, **kwargs)


def test_mnist_m_is_the_mnist_test_digits_over_colour():
    from keras_transfer import load_mnist_m

    x, y = load_mnist_m(shared_path("mnist_m"))
    assert x.shape == (9001, 32, 32, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.1
    _, mnist_labels = load_mnist(shared_path("mnist"), split="test")
    np.testing.assert_array_equal(y, mnist_labels[:9001])  # image i is MNIST test image i
    assert not np.allclose(x[..., 0], x[..., 1]), "colour, not grey"


def test_mnist_m_refuses_a_file_without_its_arrays(tmp_path):
    from keras_transfer import load_mnist_m

    np.savez(tmp_path / "mnist_m_test.npz", images=np.zeros((2, 32, 32, 3), "uint8"))
    with pytest.raises(ValueError, match="'x' and 'y'"):
        load_mnist_m(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="mnist_m_test.npz"):
        load_mnist_m(str(tmp_path / "missing"))
