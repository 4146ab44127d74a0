"""TFLite metadata for image classifiers: labels and input normalisation inside the `.tflite`.

MediaPipe Tasks' `ImageClassifier` (and the older TFLite Task Library) read a
`ModelMetadata` flatbuffer (file identifier `M001`, the schema published with
TFLite as `metadata_schema.fbs`) stored in the model's `TFLITE_METADATA`
buffer, and associated files (here `labels.txt`) appended to the model as a
zip archive. MediaPipe's own writer needs a native module that its current
wheels do not ship and `tflite-support` cannot be installed beside TensorFlow
2.21, so this module writes the few tables an image classifier needs with the
`flatbuffers` package TensorFlow already depends on, and reads them back.
"""

import dataclasses
import io
import os
import zipfile

import flatbuffers
import numpy as np

from keras_transfer._files import atomic_file

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
TFLITE_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
# The oldest metadata parser that reads every field written here.
MIN_PARSER_VERSION = "1.0.0"
_COLOR_SPACES = {"rgb": 1, "grayscale": 2}
_TENSOR_AXIS_LABELS = 2
_IMAGE_PROPERTIES = 2  # ContentProperties union member
_FEATURE_PROPERTIES = 1
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union member
# Slots of the schema's fields, in declaration order (a union takes two: type, value).
_MODEL = dict(name=0, description=1, version=2, subgraphs=3, min_parser_version=7)
_SUBGRAPH = dict(inputs=2, outputs=3)
_TENSOR = dict(name=0, description=1, content=3, process_units=4, stats=5, files=6)
_CONTENT = dict(properties_type=0, properties=1)
_IMAGE = dict(color_space=0)
_PROCESS_UNIT = dict(options_type=0, options=1)
_NORMALIZATION = dict(mean=0, std=1)
_STATS = dict(max=0, min=1)
_FILE = dict(name=0, description=1, type=2)


@dataclasses.dataclass(frozen=True)
class ClassifierMetadata:
    """What an image classifier's `.tflite` says about itself.

    `mean` and `std` are per channel: the runtime feeds `(pixel - mean) / std`
    for pixels in [0, 255] to a float input.
    """

    name: str
    labels: tuple
    mean: tuple
    std: tuple
    color_space: str
    description: str = ""
    min_parser_version: str = MIN_PARSER_VERSION


class _Builder:
    """Tables of the metadata schema, built bottom-up as flatbuffers require."""

    def __init__(self):
        self.builder = flatbuffers.Builder(1024)

    def string(self, text):
        return self.builder.CreateString(text)

    def floats(self, values):
        self.builder.StartVector(4, len(values), 4)
        for value in reversed(values):
            self.builder.PrependFloat32(float(value))
        return self.builder.EndVector()

    def tables(self, offsets):
        self.builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            self.builder.PrependUOffsetTRelative(offset)
        return self.builder.EndVector()

    def table(self, offsets=None, bytes_=None):
        """A table of `{slot: offset}` references and `{slot: value}` one-byte enums."""
        offsets, bytes_ = offsets or {}, bytes_ or {}
        self.builder.StartObject(max([*offsets, *bytes_], default=-1) + 1)
        for slot, value in bytes_.items():
            self.builder.PrependUint8Slot(slot, value, 0)
        for slot, offset in offsets.items():
            self.builder.PrependUOffsetTRelativeSlot(slot, offset, 0)
        return self.builder.EndObject()

    def finish(self, root):
        self.builder.Finish(root, METADATA_IDENTIFIER)
        return bytes(self.builder.Output())


def _metadata_buffer(metadata):
    b = _Builder()
    normalization = b.table(
        {
            _NORMALIZATION["mean"]: b.floats(metadata.mean),
            _NORMALIZATION["std"]: b.floats(metadata.std),
        }
    )
    unit = b.table(
        {_PROCESS_UNIT["options"]: normalization},
        {_PROCESS_UNIT["options_type"]: _NORMALIZATION_OPTIONS},
    )
    image = b.table(bytes_={_IMAGE["color_space"]: _COLOR_SPACES[metadata.color_space]})
    image_content = b.table(
        {_CONTENT["properties"]: image}, {_CONTENT["properties_type"]: _IMAGE_PROPERTIES}
    )
    channels = len(metadata.mean)
    image_stats = b.table(
        {_STATS["max"]: b.floats([255.0] * channels), _STATS["min"]: b.floats([0.0] * channels)}
    )
    image_tensor = b.table(
        {
            _TENSOR["name"]: b.string("image"),
            _TENSOR["description"]: b.string("Input image to be classified."),
            _TENSOR["content"]: image_content,
            _TENSOR["process_units"]: b.tables([unit]),
            _TENSOR["stats"]: image_stats,
        }
    )
    labels_file = b.table(
        {
            _FILE["name"]: b.string(LABELS_FILE),
            _FILE["description"]: b.string("Class names, one per line, in output order."),
        },
        {_FILE["type"]: _TENSOR_AXIS_LABELS},
    )
    feature = b.table()
    score_content = b.table(
        {_CONTENT["properties"]: feature}, {_CONTENT["properties_type"]: _FEATURE_PROPERTIES}
    )
    score_stats = b.table({_STATS["max"]: b.floats([1.0]), _STATS["min"]: b.floats([0.0])})
    score_tensor = b.table(
        {
            _TENSOR["name"]: b.string("probability"),
            _TENSOR["description"]: b.string("Probability of each class."),
            _TENSOR["content"]: score_content,
            _TENSOR["stats"]: score_stats,
            _TENSOR["files"]: b.tables([labels_file]),
        }
    )
    subgraph = b.table(
        {
            _SUBGRAPH["inputs"]: b.tables([image_tensor]),
            _SUBGRAPH["outputs"]: b.tables([score_tensor]),
        }
    )
    root = b.table(
        {
            _MODEL["name"]: b.string(metadata.name),
            _MODEL["description"]: b.string(metadata.description),
            _MODEL["subgraphs"]: b.tables([subgraph]),
            _MODEL["min_parser_version"]: b.string(metadata.min_parser_version),
        }
    )
    return b.finish(root)


def _model_bytes(path):
    """The flatbuffer of a `.tflite` file, without any zip of associated files after it."""
    with open(path, "rb") as f:
        data = f.read()
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"{path!r} is not a TFLite model (no 'TFL3' identifier).")
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            first = min(info.header_offset for info in archive.infolist())
        data = data[:first]
    return data


def add_classifier_metadata(
    tflite_path,
    labels,
    path=None,
    mean=0.0,
    std=1.0,
    color_space="rgb",
    name="image classifier",
    description="",
    overwrite=False,
):
    """Writes labels and input normalisation into an image classifier's `.tflite`.

    The model must take one image tensor `(1, height, width, channels)` and give
    one score per label. MediaPipe Tasks' `ImageClassifier` then runs it with no
    other files: it feeds `(pixel - mean) / std` and names each score by its label.

    Args:
        tflite_path: the `.tflite` image classifier.
        labels: class names in output order (no newlines in a name).
        path: where to write the model with metadata (default: `tflite_path`,
            replaced in place).
        mean, std: the normalisation the model expects of [0, 255] pixels: a
            number or one per channel. A model that takes raw pixels has mean 0,
            std 1; one that takes [0, 1] has mean 0, std 255.
        color_space: "rgb" or "grayscale".
        name, description: shown by metadata readers.
        overwrite: with `path` given, replace a `.tflite` model already there.

    Returns:
        The `ClassifierMetadata` written.

    Example:
    >>> add_classifier_metadata("model.tflite", ["cat", "dog"], std=255.0)  # doctest: +SKIP
    """
    from ai_edge_litert import schema_py_generated as schema

    labels = tuple(str(label) for label in labels)
    if not labels or any("\n" in label or not label for label in labels):
        raise ValueError(f"labels must be non-empty names without newlines; got {labels!r}.")
    if color_space not in _COLOR_SPACES:
        raise ValueError(f"color_space must be 'rgb' or 'grayscale'; got {color_space!r}.")
    tflite_path = os.fspath(tflite_path)
    model = schema.ModelT.InitFromPackedBuf(_model_bytes(tflite_path), 0)
    _check_classifier(model, labels, tflite_path)
    channels = _input_shape(model)[-1]
    per_channel = {}
    for argument, value in (("mean", mean), ("std", std)):
        values = np.broadcast_to(np.asarray(value, np.float32).reshape(-1), (channels,))
        if argument == "std" and np.any(values <= 0):
            raise ValueError(f"std must be positive; got {value!r}.")
        per_channel[argument] = tuple(float(v) for v in values)
    metadata = ClassifierMetadata(
        name=name,
        labels=labels,
        color_space=color_space,
        description=description,
        **per_channel,
    )
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(_metadata_buffer(metadata), np.uint8)
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), TFLITE_IDENTIFIER)
    target = tflite_path if path is None else os.fspath(path)
    with atomic_file(target, ".tflite", overwrite=path is None or overwrite, kind="tflite") as tmp:
        with open(tmp, "wb") as f:
            f.write(builder.Output())
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(LABELS_FILE, "\n".join(labels) + "\n")
    return metadata


def _input_shape(model):
    subgraph = model.subgraphs[0]
    return tuple(subgraph.tensors[subgraph.inputs[0]].shape)


def _check_classifier(model, labels, path):
    subgraph = model.subgraphs[0]
    if len(subgraph.inputs) != 1 or len(subgraph.outputs) != 1:
        raise ValueError(
            f"{path!r} must have one input and one output to carry classifier metadata; it has "
            f"{len(subgraph.inputs)} and {len(subgraph.outputs)}."
        )
    shape = _input_shape(model)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise ValueError(
            f"{path!r} must take images (batch, height, width, 1 or 3 channels); its input is "
            f"{shape}."
        )
    scores = subgraph.tensors[subgraph.outputs[0]].shape[-1]
    if scores != len(labels):
        raise ValueError(
            f"labels has {len(labels)} names but {path!r} gives {scores} scores per image."
        )


class _Table:
    """Reads fields of one flatbuffer table by slot."""

    def __init__(self, data, position):
        self.table = flatbuffers.table.Table(data, position)

    def _offset(self, slot):
        return self.table.Offset(4 + 2 * slot)

    def string(self, slot):
        offset = self._offset(slot)
        return self.table.String(offset + self.table.Pos).decode() if offset else ""

    def byte(self, slot):
        offset = self._offset(slot)
        return (
            self.table.Get(flatbuffers.number_types.Uint8Flags, offset + self.table.Pos)
            if offset
            else 0
        )

    def child(self, slot):
        offset = self._offset(slot)
        return (
            _Table(self.table.Bytes, self.table.Indirect(offset + self.table.Pos))
            if offset
            else None
        )

    def children(self, slot):
        offset = self._offset(slot)
        if not offset:
            return []
        start = self.table.Vector(offset)
        return [
            _Table(self.table.Bytes, self.table.Indirect(start + 4 * i))
            for i in range(self.table.VectorLen(offset))
        ]

    def floats(self, slot):
        offset = self._offset(slot)
        if not offset:
            return ()
        start = self.table.Vector(offset)
        count = self.table.VectorLen(offset)
        return tuple(np.frombuffer(self.table.Bytes, "<f4", count, start).tolist())


def read_classifier_metadata(tflite_path):
    """Reads back the labels and normalisation an image classifier's `.tflite` carries.

    Args:
        tflite_path: a `.tflite` file with metadata (e.g. from `add_classifier_metadata`
            or MediaPipe Model Maker).

    Returns:
        A `ClassifierMetadata`, or None when the file has no metadata.

    Example:
    >>> read_classifier_metadata("model.tflite").labels  # doctest: +SKIP
    ('cat', 'dog')
    """
    from ai_edge_litert import schema_py_generated as schema

    tflite_path = os.fspath(tflite_path)
    model = schema.ModelT.InitFromPackedBuf(_model_bytes(tflite_path), 0)
    entries = [m for m in (model.metadata or []) if m.name == METADATA_NAME.encode()]
    if not entries:
        return None
    data = bytearray(np.asarray(model.buffers[entries[0].buffer].data, np.uint8).tobytes())
    if data[4:8] != METADATA_IDENTIFIER:
        raise ValueError(f"{tflite_path!r}: its metadata buffer is not TFLite metadata ('M001').")
    root = _Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    subgraph = root.children(_MODEL["subgraphs"])[0]
    image = subgraph.children(_SUBGRAPH["inputs"])[0]
    mean, std = (), ()
    for unit in image.children(_TENSOR["process_units"]):
        if unit.byte(_PROCESS_UNIT["options_type"]) == _NORMALIZATION_OPTIONS:
            options = unit.child(_PROCESS_UNIT["options"])
            mean, std = (
                options.floats(_NORMALIZATION["mean"]),
                options.floats(_NORMALIZATION["std"]),
            )
    content = image.child(_TENSOR["content"])
    color = content.child(_CONTENT["properties"]).byte(_IMAGE["color_space"]) if content else 0
    label_files = [
        f.string(_FILE["name"])
        for tensor in subgraph.children(_SUBGRAPH["outputs"])
        for f in tensor.children(_TENSOR["files"])
        if f.byte(_FILE["type"]) == _TENSOR_AXIS_LABELS
    ]
    labels = ()
    if label_files:
        with open(tflite_path, "rb") as f, zipfile.ZipFile(f) as archive:
            text = archive.read(label_files[0]).decode()
        labels = tuple(line for line in text.splitlines() if line)
    return ClassifierMetadata(
        name=root.string(_MODEL["name"]),
        labels=labels,
        mean=mean,
        std=std,
        color_space={v: k for k, v in _COLOR_SPACES.items()}.get(color, "unknown"),
        description=root.string(_MODEL["description"]),
        min_parser_version=root.string(_MODEL["min_parser_version"]),
    )
