"""`fine_tune`: the two-phase recipe, a new head on the frozen backbone, then everything at a low
rate.
"""

import keras

from keras_transfer._checks import require_batched
from keras_transfer._checks import require_label_range
from keras_transfer._checks import require_number
from keras_transfer._checks import warn_about_images
from keras_transfer._training import ends_in_softmax
from keras_transfer._training import require_one_machine
from keras_transfer.finetune.freezing import _weighted
from keras_transfer.finetune.freezing import freeze
from keras_transfer.finetune.freezing import leaf_layers
from keras_transfer.finetune.freezing import unfreeze


def fine_tune(
    backbone,
    head,
    train_data,
    validation_data=None,
    head_epochs=5,
    fine_tune_epochs=5,
    unfreeze_top=None,
    learning_rate=1e-3,
    fine_tune_learning_rate=1e-4,
    loss=None,
    metrics=("accuracy",),
    batch_size=32,
    batch_norm="frozen",
    verbose="auto",
    callbacks=None,
):
    """The two-phase recipe: train a new head on the frozen backbone, then unfreeze the top.

    Phase 1 freezes the backbone and fits the head at `learning_rate`; phase 2
    unfreezes the top `unfreeze_top` layers with weights (all by default;
    BatchNorm stays frozen unless `batch_norm="train"`), recompiles at
    `fine_tune_learning_rate` and fits on, continuing the epoch count.

    Args:
        backbone: a Keras model giving features (e.g. from `load_backbone`).
        head: a Keras model (or layer) mapping features to outputs.
        train_data: (x, y) or (x, y, sample_weight) arrays, or a `tf.data.Dataset`
            of such batches.
        validation_data: optional, as in `fit`.
        head_epochs, fine_tune_epochs: epochs of the two phases.
        unfreeze_top: layers with weights to unfreeze in phase 2 (None: all).
        learning_rate, fine_tune_learning_rate: Adam learning rates.
        loss: default sparse categorical cross-entropy on logits.
        metrics: compiled metrics.
        batch_size: for array data.
        batch_norm: "frozen" or "train", as in `unfreeze`.
        verbose: as in `fit`.
        callbacks: Keras callbacks, given to both phases' `fit`.

    Returns:
        (model, {"head": History, "fine_tune": History}), `model` being
        inputs -> backbone -> head.

    Example:
    >>> head = keras.layers.Dense(5)  # doctest: +SKIP
    >>> model, histories = fine_tune(backbone, head, (x, y), head_epochs=10)  # doctest: +SKIP
    """
    from keras_transfer.features import stack

    for name, value in (("head_epochs", head_epochs), ("fine_tune_epochs", fine_tune_epochs)):
        require_number(value, name, integer=True)
    for name, value in (
        ("learning_rate", learning_rate),
        ("fine_tune_learning_rate", fine_tune_learning_rate),
    ):
        require_number(value, name, above=True)
    require_number(batch_size, "batch_size", minimum=1, integer=True)
    if batch_norm not in ("frozen", "train"):
        raise ValueError(f"batch_norm must be 'frozen' or 'train'; got {batch_norm!r}.")
    if unfreeze_top is not None:
        require_number(unfreeze_top, "unfreeze_top", integer=True)
        available = len(_weighted(leaf_layers(backbone)))
        if unfreeze_top > available:
            raise ValueError(
                f"unfreeze_top={unfreeze_top} exceeds the {available} layers with weights in the "
                "backbone."
            )
    if not isinstance(head, keras.Model):
        head = keras.Sequential(
            [keras.Input(tuple(backbone.outputs[0].shape[1:])), head], name="head"
        )
    model = stack(backbone, head)
    require_one_machine(model.distribute_strategy, "fine_tune")
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    from_logits = getattr(loss, "get_config", dict)().get("from_logits", False)
    if from_logits and ends_in_softmax(head):
        raise ValueError(
            "head ends in softmax (it outputs probabilities) but the loss expects logits "
            "(from_logits=True, the default): drop the softmax from the head, or pass "
            "loss=keras.losses.SparseCategoricalCrossentropy()."
        )
    if isinstance(train_data, tuple):
        if len(train_data) not in (2, 3):
            raise ValueError(
                f"train_data must be (x, y) or (x, y, sample_weight); got {len(train_data)} items."
            )
        classes = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
        require_label_range(train_data[1], classes, "train_data labels", loss)
        warn_about_images(train_data[0], "train_data inputs", backbone)
        fit_args = dict(x=train_data[0], y=train_data[1], batch_size=batch_size)
        if len(train_data) == 3:
            fit_args["sample_weight"] = train_data[2]
    else:
        fit_args = dict(x=require_batched(train_data, model, "train_data"))
    fit_args.update(
        validation_data=validation_data, verbose=verbose, callbacks=list(callbacks or [])
    )

    freeze(backbone)
    model.compile(keras.optimizers.Adam(learning_rate), loss, metrics=list(metrics))
    head_history = model.fit(epochs=head_epochs, **fit_args)

    if unfreeze_top is None:
        unfreeze(backbone, from_layer=0, batch_norm=batch_norm)
    else:
        unfreeze(backbone, top=unfreeze_top, batch_norm=batch_norm)
    model.compile(keras.optimizers.Adam(fine_tune_learning_rate), loss, metrics=list(metrics))
    tune_history = model.fit(
        initial_epoch=head_epochs, epochs=head_epochs + fine_tune_epochs, **fit_args
    )
    return model, {"head": head_history, "fine_tune": tune_history}
