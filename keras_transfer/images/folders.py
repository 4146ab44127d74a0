"""Image folders as arrays: one sub-folder per class, checked file by file before any training.

Labels follow Keras' `image_dataset_from_directory` (sub-folder names, sorted; the
formats Keras reads: BMP, GIF, JPEG, PNG, decoded by `tf.io.decode_image`, resized
by `tf.image.resize`). Keras' function is not called: it cannot name a file that
fails to decode (training stops in the middle with a TensorFlow error), skip one,
or split three ways. Images are held as uint8 arrays (150 KB each at 224x224 RGB).
"""

import dataclasses
import os

import numpy as np

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
_IGNORED = (".DS_Store", "Thumbs.db", "desktop.ini")


@dataclasses.dataclass
class ImageFolder:
    """Images read from a folder, with the files they came from.

    Attributes:
        images: uint8 array `(n, height, width, channels)`, pixels in [0, 255].
        labels: int32 class indices (None for an unlabelled folder).
        class_names: the sorted sub-folder names (empty for an unlabelled folder).
        files: the path of each image.
        skipped: `(path, reason)` for each file left out with `on_bad_file="skip"`.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple
    files: tuple
    skipped: tuple = ()

    def subset(self, indices):
        """The images at `indices`, as a new `ImageFolder`."""
        indices = np.asarray(indices, np.int64)
        return ImageFolder(
            images=self.images[indices],
            labels=None if self.labels is None else self.labels[indices],
            class_names=self.class_names,
            files=tuple(self.files[i] for i in indices),
        )


def _require_folder(directory, argument):
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{argument} must be a folder of images; {directory!r} is not one.")
    return directory


def _files_under(folder):
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            os.path.join(root, n)
            for n in sorted(names)
            if n not in _IGNORED and not n.startswith(".")
        ]
    return found


def _check_choice(value, argument, choices):
    if value not in choices:
        raise ValueError(f"{argument} must be one of {choices}; got {value!r}.")


def _decode(path, channels):
    """The image in `path` as a uint8 tensor, or the reason it cannot be read."""
    import tensorflow as tf

    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return None, f"not an image file (Keras reads {', '.join(IMAGE_EXTENSIONS)})"
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return None, f"cannot be decoded as an image ({message[:120]})"
    return image, None


def _image_size_of(image_size, first, argument):
    if image_size is None:
        height, width = int(first.shape[0]), int(first.shape[1])
        scale = min(1.0, 224 / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(s, (int, np.integer)) and s > 0 for s in image_size)
    ):
        raise ValueError(f"{argument} must be (height, width) in pixels; got {image_size!r}.")
    return int(image_size[0]), int(image_size[1])


def _read_images(files, image_size, color_mode, on_bad_file, argument):
    """(uint8 images, kept indices, skipped (path, reason)); bad files raise or are skipped."""
    import tensorflow as tf

    channels = {"rgb": 3, "grayscale": 1}[color_mode]
    images, kept, skipped = [], [], []
    for index, path in enumerate(files):
        image, reason = _decode(path, channels)
        if reason is not None:
            if on_bad_file == "error":
                raise ValueError(
                    f"{argument}: {path!r} {reason}. Remove it, or pass on_bad_file='skip' "
                    "(--skip-bad-files) to leave such files out with a count."
                )
            skipped.append((path, reason))
            continue
        if image_size is None:
            image_size = _image_size_of(None, image, argument)
        resized = tf.image.resize(image, image_size, method="bilinear")
        images.append(np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8))
        kept.append(index)
    if not images:
        raise ValueError(f"{argument}: no readable image among {len(files)} files.")
    return np.stack(images), kept, skipped


def _color_mode_of(color_mode, files):
    """'rgb' when the first images have colour channels, else 'grayscale'."""
    if color_mode != "auto":
        return color_mode
    for path in files[:20]:
        image, reason = _decode(path, 0)
        if reason is None:
            return "rgb" if image.shape[-1] >= 3 else "grayscale"
    return "rgb"


def read_image_folder(directory, image_size=None, color_mode="auto", on_bad_file="error"):
    """Reads a folder with one sub-folder of images per class.

    Every file is checked before anything trains: a non-image file, one that does
    not decode, a class folder with no image, or fewer than two classes raise a
    `ValueError` naming the file or folder; with `on_bad_file="skip"` bad files
    and empty classes are left out and listed in `skipped` instead.

    Args:
        directory: the folder; class `i` is the `i`-th sub-folder name in sorted order.
            Files directly in `directory` are refused (they have no class).
        image_size: `(height, width)` every image is resized to (bilinear); None:
            the first image's size, scaled down to at most 224 on its longer side.
        color_mode: "rgb", "grayscale" or "auto" (rgb if the first images have colour).
        on_bad_file: "error" or "skip".

    Returns:
        An `ImageFolder`.

    Example:
    >>> photos = read_image_folder("photos/", image_size=(96, 96))  # doctest: +SKIP
    >>> photos.class_names  # doctest: +SKIP
    ('cat', 'dog')
    """
    directory = _require_folder(directory, "directory")
    _check_choice(color_mode, "color_mode", ("auto", "rgb", "grayscale"))
    _check_choice(on_bad_file, "on_bad_file", ("error", "skip"))
    if image_size is not None:
        image_size = _image_size_of(image_size, None, "image_size")
    entries = sorted(e for e in os.listdir(directory) if not e.startswith("."))
    loose = [e for e in entries if os.path.isfile(os.path.join(directory, e)) and e not in _IGNORED]
    if loose:
        raise ValueError(
            f"directory {directory!r} must hold one sub-folder per class; it also holds files "
            f"with no class: {loose[:3]}. Move them into a class folder."
        )
    class_folders = [e for e in entries if os.path.isdir(os.path.join(directory, e))]
    files, labels, skipped, class_names = [], [], [], []
    for name in class_folders:
        found = _files_under(os.path.join(directory, name))
        if not any(f.lower().endswith(IMAGE_EXTENSIONS) for f in found):
            if on_bad_file == "error":
                raise ValueError(
                    f"class folder {os.path.join(directory, name)!r} holds no image "
                    f"({', '.join(IMAGE_EXTENSIONS)}); remove it or add images."
                )
            skipped.append((os.path.join(directory, name), "class folder with no image"))
            continue
        files += found
        labels += [len(class_names)] * len(found)
        class_names.append(name)
    if len(class_names) < 2:
        raise ValueError(
            f"directory {directory!r} must hold at least two class sub-folders with images; "
            f"found {class_names or 'none'}."
        )
    color_mode = _color_mode_of(color_mode, files)
    images, kept, bad = _read_images(files, image_size, color_mode, on_bad_file, "directory")
    labels = np.asarray(labels, np.int32)[kept]
    empty = [class_names[c] for c in range(len(class_names)) if not np.any(labels == c)]
    if empty:
        raise ValueError(f"class folders {empty} hold no readable image.")
    return ImageFolder(
        images=images,
        labels=labels,
        class_names=tuple(class_names),
        files=tuple(files[i] for i in kept),
        skipped=tuple(skipped + bad),
    )


def read_unlabelled_folder(directory, image_size, color_mode, on_bad_file="error"):
    """Reads every image under `directory` (sub-folders included), with no labels.

    Args:
        directory: a folder of images, e.g. photos from where the model will run.
        image_size: `(height, width)` to resize to (that of the labelled images); None:
            the first image's size, as in `read_image_folder`.
        color_mode: "rgb" or "grayscale".
        on_bad_file: "error" or "skip", as in `read_image_folder`.

    Returns:
        An `ImageFolder` with `labels=None`.

    Example:
    >>> target = read_unlabelled_folder("street/", (96, 96), "rgb")  # doctest: +SKIP
    """
    directory = _require_folder(directory, "unlabelled")
    _check_choice(color_mode, "color_mode", ("rgb", "grayscale"))
    _check_choice(on_bad_file, "on_bad_file", ("error", "skip"))
    files = _files_under(directory)
    if not files:
        raise ValueError(f"unlabelled folder {directory!r} holds no file.")
    if image_size is not None:
        image_size = _image_size_of(image_size, None, "image_size")
    images, kept, bad = _read_images(files, image_size, color_mode, on_bad_file, "unlabelled")
    return ImageFolder(images, None, (), tuple(files[i] for i in kept), tuple(bad))


def split_folder(folder, validation_split=0.1, test_split=0.1, seed=0):
    """Stratified train / validation / test parts of a labelled `ImageFolder`.

    Each class is shuffled by `seed` and cut in the given shares (at least one
    training image per class; a share rounds to whole images).

    Args:
        folder: a labelled `ImageFolder`.
        validation_split, test_split: shares in [0, 1), summing below 1.
        seed: the shuffle's seed.

    Returns:
        A dict `{"train", "validation", "test"}` of `ImageFolder`s (a part may be empty).

    Example:
    >>> parts = split_folder(read_image_folder("photos/"), 0.1, 0.1)  # doctest: +SKIP
    """
    for name, value in (("validation_split", validation_split), ("test_split", test_split)):
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a share in [0, 1); got {value!r}.")
    if validation_split + test_split >= 1:
        raise ValueError(
            f"validation_split + test_split must leave images to train on; got "
            f"{validation_split} + {test_split}."
        )
    rng = np.random.default_rng(seed)
    parts = {"train": [], "validation": [], "test": []}
    for label in range(len(folder.class_names)):
        members = rng.permutation(np.flatnonzero(folder.labels == label))
        n_test = int(round(len(members) * test_split))
        n_validation = int(round(len(members) * validation_split))
        n_test = min(n_test, max(len(members) - 1, 0))
        n_validation = min(n_validation, max(len(members) - 1 - n_test, 0))
        parts["test"] += members[:n_test].tolist()
        parts["validation"] += members[n_test : n_test + n_validation].tolist()
        parts["train"] += members[n_test + n_validation :].tolist()
    return {name: folder.subset(sorted(indices)) for name, indices in parts.items()}
