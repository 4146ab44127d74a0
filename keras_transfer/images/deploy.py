"""An image classifier on a phone: a `.tflite` that names its classes; predictions from files."""

import os
import warnings

import numpy as np

from keras_transfer._files import staging_dir
from keras_transfer.export.metadata import LABELS_FILE
from keras_transfer.export.metadata import add_classifier_metadata
from keras_transfer.export.metadata import read_classifier_metadata


def export_image_classifier(
    model, path, class_names, quantization="int8", representative_data=None, overwrite=False
):
    """Writes a `.tflite` image classifier that MediaPipe Tasks runs with no other file.

    The file takes float32 pixels in [0, 255] (metadata: mean 0, std 1), gives
    probabilities (a softmax is added to a logits model) and carries its class
    names. Its tensors stay float32 around the int8 body, as MediaPipe's
    `ImageClassifier` feeds float or uint8 images, not int8. A grey-image model gets
    a fixed RGB-to-grey front (`from_rgb`), as MediaPipe reads RGB models only; a
    quantization-aware grey model keeps its one channel (LiteRT runs it, MediaPipe not).

    Args:
        model: a Keras 3 classifier from [0, 255] images to logits (e.g. from
            `train_image_classifier`), or a quantization-aware tf_keras model with
            probabilities out (exported as int8).
        path: the `.tflite` file to write.
        class_names: one name per output, in order.
        quantization: "int8", "float16", "dynamic" or "none", as in `export_tflite`.
        representative_data: [0, 255] images to calibrate int8 ranges on.
        overwrite: replace a `.tflite` model at `path`.

    Returns:
        The `ExportReport` of the file.

    Example:
    >>> export_image_classifier(model, "out/model.tflite", ["cat", "dog"],
    ...                         representative_data=x_train)  # doctest: +SKIP
    """
    import dataclasses

    from keras_transfer.export import export_tflite
    from keras_transfer.export.convert import _is_quantize_aware
    from keras_transfer.images.networks import with_probabilities

    quantize_aware = _is_quantize_aware(model)
    phone_model = model if quantize_aware else with_probabilities(model)
    if not quantize_aware and model.inputs[0].shape[-1] == 1:
        phone_model = from_rgb(phone_model)
        if representative_data is not None:
            representative_data = np.repeat(np.asarray(representative_data), 3, axis=-1)
    channels = phone_model.inputs[0].shape[-1]
    path = os.fspath(path)
    with staging_dir(os.path.abspath(path)) as staging:
        plain = os.path.join(staging, "plain.tflite")
        with warnings.catch_warnings():
            # [0, 255] calibration images are right here: the model rescales them itself.
            warnings.filterwarnings("ignore", message="representative_data holds images")
            report = export_tflite(
                phone_model,
                plain,
                quantization="int8" if quantize_aware else quantization,
                representative_data=None if quantize_aware else representative_data,
                int8_io=False,
            )
        add_classifier_metadata(
            plain,
            class_names,
            path=path,
            mean=0.0,
            std=1.0,
            color_space="grayscale" if channels == 1 else "rgb",
            name=model.name,
            description=f"Image classifier over {len(class_names)} classes (keras-transfer).",
            overwrite=overwrite,
        )
    return dataclasses.replace(report, path=path, size_bytes=os.path.getsize(path))


def from_rgb(model):
    """A grey-image model that takes RGB images: MediaPipe Tasks runs RGB models only.

    A fixed 1x1 convolution takes the luma (0.299 R + 0.587 G + 0.114 B, as
    `tf.io.decode_image(channels=1)` computes it), so a grey picture given as
    three equal channels reaches the model unchanged.

    Example:
    >>> import keras
    >>> from_rgb(keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])).input_shape
    (None, 8, 8, 3)
    """
    import keras

    inputs = keras.Input(tuple(model.inputs[0].shape[1:-1]) + (3,), name="image")
    luma = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="luma")
    grey = luma(inputs)
    luma.set_weights([np.array([0.299, 0.587, 0.114], "float32").reshape(1, 1, 3, 1)])
    return keras.Model(inputs, model(grey), name=model.name)


def _labels_for(model_path, labels, count):
    if labels is not None:
        labels = list(labels)
    elif model_path.endswith(".tflite") and (meta := read_classifier_metadata(model_path)):
        labels = list(meta.labels)
    else:
        beside = os.path.join(os.path.dirname(os.path.abspath(model_path)), LABELS_FILE)
        if os.path.isfile(beside):
            with open(beside) as f:
                labels = [line.strip() for line in f if line.strip()]
    if labels is None:
        return [str(i) for i in range(count)]
    if len(labels) != count:
        raise ValueError(f"labels has {len(labels)} names but the model gives {count} scores.")
    return labels


def predict_images(model_path, image_paths, top_k=3, labels=None):
    """Top-k classes of image files, from a `.keras` or a `.tflite` classifier.

    Images are read and resized as for training (bilinear, to the model's input
    size). Class names come from `labels`, else the `.tflite` metadata, else a
    `labels.txt` beside the model, else the indices.

    Args:
        model_path: a `.keras` file (loaded in safe mode) or a `.tflite` file.
        image_paths: image files.
        top_k: how many classes to return per image.
        labels: optional class names in output order.

    Returns:
        For each image, a list of `(class name, probability)`, most likely first.

    Example:
    >>> predict_images("out/model.tflite", ["cat.jpg"], top_k=1)  # doctest: +SKIP
    [[('cat', 0.97)]]
    """
    from keras_transfer.images.folders import _read_images

    model_path = os.fspath(model_path)
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"model file not found: {model_path!r}.")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a whole number >= 1; got {top_k!r}.")
    image_paths = [os.fspath(p) for p in image_paths]
    for image_path in image_paths:
        if not os.path.isfile(image_path):
            raise FileNotFoundError(f"image file not found: {image_path!r}.")
    if model_path.endswith(".tflite"):
        from keras_transfer.export import load_tflite
        from keras_transfer.export import tflite_predict

        shape = tuple(load_tflite(model_path).get_input_details()[0]["shape"][1:])
        run = lambda x: tflite_predict(model_path, x)  # noqa: E731
    elif model_path.endswith(".keras"):
        import keras

        from keras_transfer._checks import require_keras_archive
        from keras_transfer._training import ends_in_softmax

        require_keras_archive(model_path, "model_path")
        model = keras.saving.load_model(model_path, safe_mode=True)
        shape = tuple(model.inputs[0].shape[1:])
        softmax = not ends_in_softmax(model)

        def run(x):
            scores = np.asarray(model.predict(x, verbose=0), np.float64)
            if softmax:
                scores = np.exp(scores - scores.max(-1, keepdims=True))
                scores /= scores.sum(-1, keepdims=True)
            return scores
    else:
        raise ValueError(f"model_path must be a .keras or .tflite file; got {model_path!r}.")
    color_mode = "grayscale" if shape[-1] == 1 else "rgb"
    images, _, _ = _read_images(image_paths, shape[:2], color_mode, "error", "images")
    scores = np.asarray(run(images.astype("float32")))
    names = _labels_for(model_path, labels, scores.shape[-1])
    top = np.argsort(-scores, axis=-1)[:, :top_k]
    return [[(names[c], float(row[c])) for c in order] for row, order in zip(scores, top)]
