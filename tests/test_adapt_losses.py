"""GradientReversal, MMD/CORAL/CMD against numpy, proxy A-distance, importance weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.adapt import Discrepancy
from keras_transfer.adapt import GradientReversal
from keras_transfer.adapt import cmd
from keras_transfer.adapt import coral
from keras_transfer.adapt import importance_weighted_risk
from keras_transfer.adapt import importance_weights
from keras_transfer.adapt import mmd
from keras_transfer.adapt import proxy_a_distance

# --- numpy references, written from the papers' formulas -------------------------------------


def np_kernel_sum(a, b, bandwidths):
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return sum(np.exp(-d / s) for s in bandwidths)


def np_bandwidths(x, y, mul=2.0, num=5):
    pooled = np.concatenate([x, y])
    d = ((pooled[:, None, :] - pooled[None, :, :]) ** 2).sum(-1)
    n = len(pooled)
    mean = d.sum() / (n * n - n)
    return [mean * mul ** (k - num // 2) for k in range(num)]


def np_mmd(x, y, estimator):
    s = np_bandwidths(x, y)
    kxx, kyy, kxy = np_kernel_sum(x, x, s), np_kernel_sum(y, y, s), np_kernel_sum(x, y, s)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    m, n = len(x), len(y)
    if estimator == "unbiased":
        return (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean()
        )
    h = m // 2
    k = lambda a, b: sum(np.exp(-((a - b) ** 2).sum(-1) / bw) for bw in s)  # noqa: E731
    x1, x2, y1, y2 = x[:h], x[h : 2 * h], y[:h], y[h : 2 * h]
    return np.mean(k(x1, x2) + k(y1, y2) - k(x1, y2) - k(x2, y1))


def np_coral(x, y):
    d = x.shape[1]
    return np.sum((np.cov(x, rowvar=False) - np.cov(y, rowvar=False)) ** 2) / (4 * d * d)


def np_cmd(x, y, k=5, a=None, b=None):
    if a is None:  # the pooled batch's range
        a, b = min(x.min(), y.min()), max(x.max(), y.max())
    total = np.linalg.norm(x.mean(0) - y.mean(0)) / abs(b - a)
    for j in range(2, k + 1):
        total += (
            np.linalg.norm(((x - x.mean(0)) ** j).mean(0) - ((y - y.mean(0)) ** j).mean(0))
            / abs(b - a) ** j
        )
    return total


@pytest.fixture
def batches(rng):
    x = rng.normal(size=(40, 6)).astype("float32")
    y = (rng.normal(size=(40, 6)) * 1.5 + 0.7).astype("float32")
    return x, y


# --- gradient reversal ---------------------------------------------------------------------------


def test_reversal_gradient_is_exactly_minus_lambda_times_upstream(rng):
    layer = GradientReversal(0.37)
    x = tf.constant(rng.normal(size=(5, 3)).astype("float32"))
    upstream = tf.constant(rng.normal(size=(5, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        objective = tf.reduce_sum(y * upstream)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(
        tape.gradient(objective, x).numpy(), -0.37 * upstream.numpy(), rtol=1e-6
    )


def test_lambda_changes_take_effect_mid_fit_without_retracing():
    traces = []

    class CountTraces(keras.layers.Layer):
        def call(self, x):
            traces.append(1)  # Python runs only while tracing
            return x

    reversal = GradientReversal(1.0)
    inputs = keras.Input((1,))
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    model = keras.Model(inputs, reversal(CountTraces()(dense(inputs))))
    model.compile(keras.optimizers.SGD(0.1), loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    kernels = []

    class SetLambda(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            reversal.lambda_.assign([1.0, 0.0, 2.0][epoch])

        def on_epoch_end(self, epoch, logs=None):
            kernels.append(float(dense.kernel.numpy()[0, 0]))

    model.fit(
        np.ones((1, 1), "float32"),
        np.zeros((1, 1), "float32"),
        epochs=3,
        batch_size=1,
        verbose=0,
        callbacks=[SetLambda()],
    )
    # d(mean y)/d kernel = 1; reversed: -lambda; SGD adds lr * lambda.
    np.testing.assert_allclose(kernels, [1.1, 1.1, 1.3], rtol=1e-6)
    assert len(traces) <= 2, (
        "the training function was traced again"
    )  # one symbolic build, one trace


def test_reversal_serializes_with_its_lambda():
    layer = GradientReversal(0.25)
    layer.lambda_.assign(0.8)
    again = GradientReversal.from_config(layer.get_config())
    assert float(again.lambda_.numpy()) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="lambda_ must be >= 0"):
        GradientReversal(-1.0)


# --- discrepancies ------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear"])
def test_mmd_matches_numpy(batches, estimator):
    x, y = batches
    assert float(mmd(x, y, estimator=estimator)) == pytest.approx(
        np_mmd(x, y, estimator), rel=1e-4, abs=1e-6
    )


def test_mmd_is_zero_for_identical_batches_and_grows_with_the_shift(batches):
    x, _ = batches
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-6)
    values = [float(mmd(x, x + shift)) for shift in (0.2, 1.0, 3.0)]
    assert values == sorted(values) and values[0] > 0
    with pytest.raises(ValueError, match="estimator must be"):
        mmd(x, x, estimator="fast")


def test_coral_matches_numpy_and_ignores_mean_shifts(batches):
    x, y = batches
    assert float(coral(x, y)) == pytest.approx(np_coral(x, y), rel=1e-4)
    assert float(coral(x, x + 4.0)) == pytest.approx(0.0, abs=1e-9)
    assert float(coral(x, 2.0 * x)) > float(coral(x, 1.2 * x)) > 0


def test_cmd_matches_numpy_and_grows_with_the_shift(rng):
    x = rng.uniform(size=(50, 4)).astype("float32")
    y = (rng.uniform(size=(50, 4)) ** 2).astype("float32")
    assert float(cmd(x, y)) == pytest.approx(np_cmd(x, y), rel=1e-4)
    assert float(cmd(x, y, k=2)) == pytest.approx(np_cmd(x, y, k=2), rel=1e-4)
    given = float(cmd(x, y, bounds=(0.0, 2.0)))
    assert given == pytest.approx(np_cmd(x, y, a=0.0, b=2.0), rel=1e-4)
    assert given != pytest.approx(float(cmd(x, y)), rel=1e-2)
    assert float(cmd(x, x)) == 0.0
    assert float(cmd(x, np.clip(x + 0.1, 0, 1))) < float(cmd(x, np.clip(x + 0.4, 0, 1)))
    with pytest.raises(ValueError, match="k must be >= 1"):
        cmd(x, y, k=0)
    with pytest.raises(ValueError, match="bounds must be"):
        cmd(x, y, bounds=(1.0, 1.0))


def test_cmd_by_default_ignores_the_features_scale(rng):
    """Unbounded (ReLU) features: the pooled range stands for the bounds, so scaling both batches
    changes nothing, where fixed bounds let the 5th moment grow with the scale to the 5th."""
    x = rng.uniform(size=(50, 4)).astype("float32")
    y = (rng.uniform(size=(50, 4)) ** 2).astype("float32")
    assert float(cmd(5 * x, 5 * y)) == pytest.approx(float(cmd(x, y)), rel=1e-4)
    assert float(cmd(5 * x, 5 * y, bounds=(0, 1))) > 4 * float(cmd(x, y, bounds=(0, 1)))
    # Nor does it reward shrinking the features: no gradient along their common scale.
    scale = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        value = cmd(scale * x, scale * y)
    assert abs(float(tape.gradient(value, scale))) < 1e-4 * float(value)


def test_discrepancy_loss_object_equals_the_function_and_round_trips(batches):
    x, y = batches
    loss = Discrepancy("mmd", estimator="unbiased")
    assert float(loss(x, y)) == pytest.approx(float(mmd(x, y, estimator="unbiased")), rel=1e-6)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert float(again(x, y)) == pytest.approx(float(loss(x, y)), rel=1e-6)
    with pytest.raises(ValueError, match="discrepancy must be one of"):
        Discrepancy("wasserstein")


# --- proxy A-distance and re-weighting ------------------------------------------------------------


def test_proxy_a_distance_separates_shifted_domains_and_not_identical_ones(rng):
    a = rng.normal(size=(400, 5))
    assert proxy_a_distance(a, rng.normal(size=(400, 5)) + 3.0) > 1.9
    assert abs(proxy_a_distance(a, rng.normal(size=(400, 5)))) < 0.3
    with pytest.raises(ValueError, match="must match"):
        proxy_a_distance(a, rng.normal(size=(400, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        proxy_a_distance(a[:1], a)


def test_importance_weights_favour_source_samples_that_look_like_the_target(rng):
    source = rng.normal(size=(1000, 1))
    target = rng.normal(size=(1000, 1)) + 1.0
    weights = importance_weights(source, target)
    assert weights.shape == (1000,) and weights.dtype == np.float32
    assert weights.mean() == pytest.approx(1.0, rel=1e-5)
    # The true ratio p_t/p_s = exp(x - 1/2) rises with x.
    order = np.argsort(source[:, 0])
    assert weights[order[-100:]].mean() > 5 * weights[order[:100]].mean()
    weighted_mean = np.average(source[:, 0], weights=weights)
    assert weighted_mean > 0.6, "re-weighted source mean moves towards the target's (1.0)"
    with pytest.raises(ValueError, match="must match"):
        importance_weights(source, rng.normal(size=(10, 2)))
    with pytest.raises(ValueError, match="target must be a non-empty"):
        importance_weights(source, np.zeros((0, 1)))


def test_importance_weighted_risk_estimates_the_loss_where_the_target_lives(rng):
    loss_at = lambda x: (x[:, 0] > 0.5).astype(float)  # noqa: E731  the model errs for x > 0.5
    source = rng.normal(size=(3000, 1))
    target = rng.normal(size=(3000, 1)) + 1.0
    risk = importance_weighted_risk(loss_at(source), source, target)
    assert risk == pytest.approx(loss_at(target).mean(), abs=0.1)  # true target error 0.69
    assert abs(risk - loss_at(target).mean()) < 0.5 * abs(
        loss_at(source).mean() - loss_at(target).mean()
    )
    same = importance_weighted_risk(loss_at(source), source, rng.normal(size=(3000, 1)))
    assert same == pytest.approx(loss_at(source).mean(), abs=0.03)
    with pytest.raises(ValueError, match="one loss per sample"):
        importance_weighted_risk(np.ones(5), source, target)
    with pytest.raises(ValueError, match="NaN"):
        importance_weighted_risk(np.full(3000, np.nan), source, target)


# --- MCC's class confusion -------------------------------------------------------------


def test_class_confusion_is_zero_when_certain_and_largest_when_uniform(rng):
    from keras_transfer.adapt.mcc import class_confusion

    certain = np.eye(5, dtype="float32")[rng.integers(0, 5, 64)] * 40.0
    assert float(class_confusion(certain, temperature=2.5)) < 1e-4
    uniform = np.zeros((64, 5), "float32")  # every class equally likely: all mass off-diagonal
    assert float(class_confusion(uniform)) == pytest.approx(4 / 5, rel=1e-6)
    logits = rng.normal(size=(64, 5)).astype("float32") * 3
    value = float(class_confusion(logits))
    assert 0 < value < 4 / 5
    # Per paper: a sample weighted by 1 + exp(-entropy), weights normalised to mean 1; the
    # class correlation's rows normalised to sum 1; the mean off-diagonal mass.
    p = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(1, keepdims=True)
    w = 1 + np.exp((p * np.log(p + 1e-5)).sum(1))
    w = len(p) * w / w.sum()
    c = (p * w[:, None]).T @ p
    c = c / c.sum(1, keepdims=True)
    assert value == pytest.approx((c.sum() - np.trace(c)) / 5, rel=1e-5)
    shuffled = logits[rng.permutation(64)][:, [2, 0, 1, 4, 3]]
    assert float(class_confusion(shuffled)) == pytest.approx(value, rel=1e-5)


def test_mcc_refuses_a_bad_temperature_or_weight():
    from keras_transfer import adapt
    from tests.adapters import digit_networks

    for kwargs, name in (
        ({"temperature": 0.0}, "temperature"),
        ({"confusion_weight": -1.0}, "confusion_weight"),
        ({"temperature": float("nan")}, "temperature"),
    ):
        with pytest.raises(ValueError, match=name):
            adapt.MCC(*digit_networks(), **kwargs)


# --- CDAN's conditioned discriminator input and entropy weights ------------------------------


def test_multilinear_map_is_the_outer_product_of_probabilities_and_features(rng):
    from keras_transfer.adapt.cdan import MultilinearMap

    f = rng.normal(size=(6, 5)).astype("float32")
    p = rng.dirichlet(np.ones(3), size=6).astype("float32")
    want = np.stack([np.outer(p[i], f[i]).ravel() for i in range(6)])  # [c * d + j] = p_c f_j
    np.testing.assert_allclose(MultilinearMap()([f, p]).numpy(), want, rtol=1e-6)


def test_randomized_multilinear_map_is_the_product_of_two_fixed_projections(rng, tmp_path):
    from keras_transfer.adapt.cdan import MultilinearMap

    f = rng.normal(size=(6, 40)).astype("float32")
    p = rng.dirichlet(np.ones(3), size=6).astype("float32")
    layer = MultilinearMap(randomized_dim=16, max_full_dim=100)  # 40 x 3 > 100: randomized
    out = layer([f, p]).numpy()
    r_f, r_p = (w.numpy() for w in layer.weights)
    assert r_f.shape == (40, 16) and r_p.shape == (3, 16)
    np.testing.assert_allclose(out, (f @ r_f) * (p @ r_p) / 4.0, rtol=1e-5, atol=1e-6)
    # the projections are saved: a restored model maps the same way
    inputs = [keras.Input((40,)), keras.Input((3,))]
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "map.keras")
    restored = keras.saving.load_model(tmp_path / "map.keras", safe_mode=True)
    np.testing.assert_allclose(restored.predict([f, p], verbose=0), out, rtol=1e-5)


def test_cdan_e_loss_is_the_entropy_weighted_domain_cross_entropy(rng):
    from keras_transfer import adapt
    from keras_transfer.adapt.adapter import DomainBatch
    from keras_transfer.adapt.adapter import DomainOutputs
    from tests.adapters import digit_networks

    backbone, classifier = digit_networks()
    width = backbone.output_shape[-1]
    discriminator = keras.Sequential([keras.Input((width * 10,)), keras.layers.Dense(1)])
    cdan = adapt.CDAN(backbone, classifier, discriminator=discriminator)
    f = rng.normal(size=(8, width)).astype("float32")
    logits = rng.normal(size=(8, 10)).astype("float32") * 3
    batch = DomainBatch(
        DomainOutputs(f[:4], logits[:4]), DomainOutputs(f[4:], logits[4:]), np.zeros(4)
    )
    loss, logs = cdan.adaptation_loss(batch)
    # numpy: p = softmax(logits); h = p (x) f; d = discriminator(h); w = 1 + exp(-H(p)),
    # normalised to mean 1; loss = mean(w * BCE(d, [0]*4 + [1]*4)).
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    h = np.stack([np.outer(p[i], f[i]).ravel() for i in range(8)])
    kernel, bias = (w.numpy() for w in discriminator.weights)
    d = (h @ kernel + bias)[:, 0]
    labels = np.array([0.0] * 4 + [1.0] * 4)
    bce = np.maximum(d, 0) - d * labels + np.log1p(np.exp(-np.abs(d)))
    w = 1 + np.exp((p * np.log(p + 1e-5)).sum(1))
    w /= w.mean()
    assert float(loss) == pytest.approx(float((w * bce).mean()), rel=1e-5)
    assert float(logs["domain_accuracy"]) == pytest.approx(np.mean((d > 0) == labels))
    plain = adapt.CDAN(
        backbone, classifier, discriminator=discriminator, entropy_conditioning=False
    )
    assert float(plain.adaptation_loss(batch)[0]) == pytest.approx(float(bce.mean()), rel=1e-5)


def test_cdan_trains_the_features_against_the_discriminator_through_the_map_only(rng):
    """The conditioning softmax is held constant: the domain loss reaches the classifier not at
    all (only through the task loss), the backbone reversed, the discriminator directly."""
    from keras_transfer import adapt
    from keras_transfer.adapt.adapter import DomainBatch
    from keras_transfer.adapt.adapter import DomainOutputs
    from tests.adapters import digit_networks

    backbone, classifier = digit_networks()
    cdan = adapt.CDAN(backbone, classifier)
    x = tf.constant(rng.normal(size=(8, 8, 8, 1)).astype("float32"))
    with tf.GradientTape() as tape:
        f = backbone(x)
        logits = classifier(f)
        batch = DomainBatch(DomainOutputs(f[:4], logits[:4]), DomainOutputs(f[4:], logits[4:]), 0)
        loss, _ = cdan.adaptation_loss(batch)
    variables = classifier.trainable_variables + backbone.trainable_variables
    gradients = tape.gradient(loss, variables + cdan.discriminator.trainable_variables)
    assert all(g is None for g in gradients[: len(classifier.trainable_variables)])
    assert all(g is not None for g in gradients[len(classifier.trainable_variables) :])


def test_a_cdan_on_the_randomized_map_round_trips_through_a_keras_file(digits, tmp_path):
    """500 features x 10 classes > 4,096: the randomized map, whose projections the file holds."""
    import keras_transfer as kt
    from keras_transfer import adapt

    (x, y), (x_test, _) = digits
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(500, "relu")]
    )
    classifier = keras.Sequential([keras.Input((500,)), keras.layers.Dense(10)])
    cdan = adapt.CDAN(backbone, classifier, randomized_dim=32)
    assert cdan.multilinear.randomized and cdan.discriminator.input_shape[1:] == (32,)
    cdan.compile(keras.optimizers.Adam(1e-3))
    cdan.fit(kt.domain_pairs((x, y), x_test[:, :, ::-1], batch_size=64), epochs=1, verbose=0)
    cdan.save(tmp_path / "cdan.keras")
    restored = keras.saving.load_model(tmp_path / "cdan.keras", safe_mode=True)
    for mine, theirs in zip(cdan.multilinear.weights, restored.multilinear.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_allclose(
        restored.predict(x_test[:32], verbose=0), cdan.predict(x_test[:32], verbose=0), atol=1e-6
    )


def test_balanced_weight_is_the_source_task_loss_over_the_discrepancy(rng):
    """Deep CORAL's rule, recomputed by hand on the same batch draws: the mean source task loss
    of a source-trained model over the mean discrepancy between the domains' features."""
    from keras_transfer import adapt
    from keras_transfer import datasets
    from tests.adapters import digit_networks

    (x, y), _ = datasets.load_digits(seed=0)
    x_target = x[:, :, ::-1, :].copy()  # mirrored digits: another domain, labels unused
    backbone, classifier = digit_networks()
    model = keras.Sequential([backbone, classifier])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    found = {
        name: adapt.balanced_weight(backbone, classifier, (x, y), x_target, name, batches=3)
        for name in ("coral", "cmd")
    }
    draws = np.random.default_rng(0)
    losses, discrepancies = [], []
    for _ in range(3):
        i = draws.choice(len(x), 64, replace=False)
        j = draws.choice(len(x_target), 64, replace=False)
        source, target = backbone(x[i]).numpy(), backbone(x_target[j]).numpy()
        logits = classifier(source).numpy()
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        losses.append(-log_p[np.arange(64), y[i]].mean())
        discrepancies.append(np_coral(source, target))
    assert found["coral"] == pytest.approx(np.mean(losses) / np.mean(discrepancies), rel=1e-3)
    # CORAL is a mean of squared covariance differences, CMD a sum of moment norms: CORAL's
    # weight is orders of magnitude larger, as on the digit benchmark (17 against 0.05).
    assert found["coral"] > 100 * found["cmd"]
    with pytest.raises(ValueError, match="source must be"):
        adapt.balanced_weight(backbone, classifier, x, x_target)
    with pytest.raises(ValueError, match="x_target has 10 samples"):
        adapt.balanced_weight(backbone, classifier, (x, y), x_target[:10])
