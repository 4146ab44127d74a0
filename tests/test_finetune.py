"""Freezing, gradual unfreezing, layer-wise learning rates, L2-SP, LoRA and the two-phase recipe."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_transfer as kt
from keras_transfer.finetune import leaf_layers


def backbone_with_batchnorm(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.Conv2D(16, 3, padding="same", name="conv2"),
            keras.layers.BatchNormalization(name="bn2"),
            keras.layers.ReLU(name="relu2"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(16, activation="relu", name="fc"),
        ],
        name="backbone",
    )


def classifier(backbone, classes=10):
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(classes, name="head")(backbone(inputs)))
    model.compile(
        keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def snapshot(layers):
    return {layer.name: [w.numpy().copy() for w in layer.weights] for layer in layers}


def changed(before, layers):
    return {
        layer.name
        for layer in layers
        if any(np.abs(w.numpy() - b).max() > 0 for w, b in zip(layer.weights, before[layer.name]))
    }


def trainable_names(model):
    return {v.path.split("/")[-2] for v in model.trainable_variables}


def test_frozen_layers_get_no_gradient_and_do_not_change(digits):
    (x, y), _ = digits
    backbone = backbone_with_batchnorm()
    model = classifier(backbone)
    assert kt.freeze(backbone, until="bn1") == ["conv1", "bn1"]
    model.compile(
        keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    assert trainable_names(model) == {"conv2", "bn2", "fc", "head"}
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=x[:64], y=y[:64], y_pred=model(x[:64], training=True))
    grads = dict(
        zip(
            [v.path for v in model.trainable_variables],
            tape.gradient(loss, model.trainable_variables),
        )
    )
    assert all(g is not None for g in grads.values())
    layers = leaf_layers(model)
    before = snapshot(layers)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert changed(before, layers) == {
        "conv2",
        "bn2",
        "fc",
        "head",
    }  # bn1's moving statistics too stay put


def test_unfreeze_top_keeps_batchnorm_in_inference_mode_unless_asked(digits):
    (x, y), _ = digits
    for batch_norm, expect in (
        ("frozen", {"conv2", "fc", "head"}),
        ("train", {"conv2", "bn2", "fc", "head"}),
    ):
        backbone = backbone_with_batchnorm()
        model = classifier(backbone)
        kt.freeze(backbone)
        unfrozen = kt.unfreeze(backbone, top=3, batch_norm=batch_norm)
        assert set(unfrozen) == expect - {"head"}
        model.compile(
            keras.optimizers.Adam(3e-3),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        layers = leaf_layers(model)
        before = snapshot(layers)
        model.fit(x, y, epochs=1, batch_size=64, verbose=0)
        assert changed(before, layers) == expect, batch_norm


def test_unfreeze_from_layer_and_bad_requests():
    backbone = backbone_with_batchnorm()
    kt.freeze(backbone)
    assert kt.unfreeze(backbone, from_layer="conv2") == ["conv2", "relu2", "pool", "fc"]
    with pytest.raises(ValueError, match="top=9 exceeds the 5 layers with weights"):
        kt.unfreeze(backbone, top=9)
    with pytest.raises(ValueError, match="from_layer='conv9' is not a layer"):
        kt.unfreeze(backbone, from_layer="conv9")
    with pytest.raises(ValueError, match="exactly one of top= or from_layer="):
        kt.unfreeze(backbone)
    with pytest.raises(ValueError, match="until=12 is out of range"):
        kt.freeze(backbone, until=12)


def test_gradual_unfreezing_changes_the_trainable_set_at_the_planned_epochs(digits):
    (x, y), _ = digits
    backbone = backbone_with_batchnorm()
    model = classifier(backbone)
    kt.freeze(backbone)
    model.compile(
        keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    layers = leaf_layers(model)
    seen, moved = {}, {}

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen[epoch] = trainable_names(self.model)
            self.before = snapshot(layers)

        def on_epoch_end(self, epoch, logs=None):
            moved[epoch] = changed(self.before, layers)

    schedule = kt.GradualUnfreezing(every=2, target=backbone)
    model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[schedule, Watch()])
    assert schedule.unfrozen_at == {
        2: ["fc"],
        4: ["conv2"],
    }  # BatchNorm is no block: it stays frozen
    assert seen[0] == seen[1] == {"head"}
    assert seen[2] == seen[3] == {"head", "fc"}
    assert seen[4] == {"head", "fc", "conv2"}
    assert (
        moved[1] == {"head"} and moved[2] == {"head", "fc"} and moved[4] == {"head", "fc", "conv2"}
    )


def test_layerwise_learning_rates_scale_each_block_update():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, name="low"),
            keras.layers.Dense(3, name="mid"),
            keras.layers.Dense(2, name="top"),
        ]
    )
    optimizer = kt.layerwise_optimizer(model, keras.optimizers.SGD(0.1), decay=0.5)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    rates = {"low": 0.025, "mid": 0.05, "top": 0.1}
    for variable, grad, start in zip(model.trainable_variables, grads, before):
        want = start - rates[variable.path.split("/")[-2]] * grad.numpy()
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="decay must be in"):
        kt.layerwise_optimizer(model, keras.optimizers.SGD(0.1), decay=0.0)


def test_layerwise_optimizer_trains_and_saves_with_the_model(digits, tmp_path):
    (x, y), (x_test, _) = digits
    backbone = backbone_with_batchnorm()
    model = classifier(backbone)
    model.compile(
        kt.layerwise_optimizer(model, keras.optimizers.Adam(3e-3), decay=0.7),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    # Measured 2.27 -> 2.08 (plain Adam: 2.23 -> 1.82; lower layers learn 0.7^k slower).
    assert history.history["loss"][-1] < 0.95 * history.history["loss"][0]
    model.save(tmp_path / "layerwise.keras")
    restored = keras.saving.load_model(tmp_path / "layerwise.keras")
    np.testing.assert_allclose(
        restored.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-5
    )


def test_l2_sp_penalty_equals_its_formula():
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="pre")])
    model = keras.Sequential([backbone, keras.layers.Dense(2, name="new")])
    start = [w.numpy().copy() for w in backbone.weights]
    assert kt.l2_sp(model, backbone, sp_weight=0.3, l2_weight=0.05) == {"transferred": 2, "new": 2}
    rng = np.random.default_rng(1)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(size=w.shape).astype("float32"))
    want = 0.5 * 0.3 * sum(np.sum((w.numpy() - s) ** 2) for w, s in zip(backbone.weights, start))
    want += 0.5 * 0.05 * sum(np.sum(w.numpy() ** 2) for w in model.get_layer("new").weights)
    assert float(sum(model.losses)) == pytest.approx(want, rel=1e-5)


def test_l2_sp_attached_to_a_frozen_backbone_counts_once_it_is_unfrozen():
    backbone = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="pre")])
    backbone.trainable = False
    model = keras.Sequential([backbone, keras.layers.Dense(2, name="new")])
    kt.l2_sp(model, backbone, sp_weight=1.0, l2_weight=0.0)
    backbone.weights[0].assign(backbone.weights[0] + 1.0)
    assert float(sum(model.losses)) == 0.0  # frozen: no penalty
    kt.unfreeze(backbone, top=1)
    assert float(sum(model.losses)) == pytest.approx(0.5 * 4 * 3)


def test_l2_sp_pulls_fine_tuned_weights_back_towards_the_pretrained_ones(digits):
    (x, y), _ = digits
    distances = {}
    for alpha in (0.0, 1.0):
        backbone = backbone_with_batchnorm()
        model = classifier(backbone)
        start = {v.path: v.numpy().copy() for v in backbone.trainable_variables}
        kt.l2_sp(model, backbone, sp_weight=alpha, l2_weight=0.0)
        keras.utils.set_random_seed(1)
        model.fit(x, y, epochs=3, batch_size=64, verbose=0)
        distances[alpha] = np.sqrt(
            sum(np.sum((v.numpy() - start[v.path]) ** 2) for v in backbone.trainable_variables)
        )
    assert distances[1.0] < 0.5 * distances[0.0], distances


def test_lora_trains_only_the_low_rank_matrices_and_round_trips(digits, tmp_path):
    (x, y), (x_test, _) = digits
    backbone = backbone_with_batchnorm()
    model = classifier(backbone)
    kt.freeze(backbone)
    assert kt.add_lora(model, rank=2, layers=["fc"]) == ["fc"]
    model.compile(
        keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    names = sorted("/".join(v.path.split("/")[-2:]) for v in model.trainable_variables)
    assert names == ["fc/bias", "fc/lora_kernel_a", "fc/lora_kernel_b", "head/bias", "head/kernel"]
    kt.unfreeze(backbone, from_layer="pool")  # a later unfreeze keeps LoRA's base kernel frozen
    assert "fc/kernel" not in {"/".join(v.path.split("/")[-2:]) for v in model.trainable_variables}
    fc = backbone.get_layer("fc")
    fc_kernel = [v for v in fc.weights if v.name == "kernel"][0]
    kernel_before = fc_kernel.numpy().copy()
    outputs_before = model.predict(x_test, verbose=0)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    assert np.abs(fc.lora_kernel_b.numpy()).max() > 0, "B starts at zero and trains"
    np.testing.assert_array_equal(fc_kernel.numpy(), kernel_before)
    assert np.abs(model.predict(x_test, verbose=0) - outputs_before).max() > 1e-3
    model.save(tmp_path / "lora.keras")
    restored = keras.saving.load_model(tmp_path / "lora.keras")
    np.testing.assert_allclose(
        restored.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-5
    )
    resumed_fc = restored.get_layer("backbone").get_layer("fc")
    assert np.abs(resumed_fc.lora_kernel_a.numpy()).max() == 0, "Keras loads both at zero"
    assert kt.resume_lora(restored, seed=0) == ["fc"]
    np.testing.assert_allclose(  # the same function, ...
        restored.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-5
    )
    restored.compile(
        keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    merged = resumed_fc.kernel.numpy().copy()
    history = restored.fit(x, y, epochs=2, batch_size=64, verbose=0).history
    assert np.abs(resumed_fc.kernel.numpy() - merged).max() > 1e-3, "... and LoRA learns again"
    assert history["loss"][-1] < history["loss"][0]
    assert kt.resume_lora(restored) == [], "trained adapters are left as they are"
    with pytest.raises(ValueError, match="does not support LoRA"):
        kt.add_lora(model, rank=2, layers=["bn1"])
    with pytest.raises(ValueError, match="are not in the model"):
        kt.add_lora(model, rank=2, layers=["nope"])


def test_fine_tune_runs_both_phases_with_a_frozen_backbone_first(digits):
    (x, y), (x_test, y_test) = digits
    backbone = backbone_with_batchnorm()
    start = snapshot(leaf_layers(backbone))
    model, histories = kt.fine_tune(
        backbone, keras.layers.Dense(10), (x, y), head_epochs=3, fine_tune_epochs=0, verbose=0
    )
    assert changed(start, leaf_layers(backbone)) == set()
    assert len(histories["head"].history["loss"]) == 3
    model, histories = kt.fine_tune(
        backbone,
        keras.layers.Dense(10),
        (x, y),
        head_epochs=2,
        fine_tune_epochs=4,
        learning_rate=3e-3,
        fine_tune_learning_rate=3e-3,
        verbose=0,
    )
    assert histories["fine_tune"].epoch == [2, 3, 4, 5]
    assert changed(start, leaf_layers(backbone)) == {
        "conv1",
        "conv2",
        "fc",
    }  # BatchNorm stays frozen
    assert histories["fine_tune"].history["loss"][-1] < histories["head"].history["loss"][0]
    assert (
        model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"] > 0.2
    )  # chance is 0.1
    with pytest.raises(ValueError, match="unfreeze_top=50 exceeds"):
        kt.fine_tune(backbone, keras.layers.Dense(10), (x, y), unfreeze_top=50)
