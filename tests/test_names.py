"""One name per role: `backbone` for the feature network, `<term>_weight` for trade-off weights.

The first release's keywords keep working for one release with a DeprecationWarning, and files
keep the first release's layout, so they load in either release.
"""

import os
import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer import adapt
from tests.adapters import ADAPTERS
from tests.adapters import build as make_adapter
from tests.adapters import digit_networks as _networks


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_every_adapter_takes_its_feature_network_as_backbone(name):
    adapter = make_adapter(name, seed=0)
    assert adapter.backbone is adapter.feature_extractor
    cls = type(adapter)
    backbone, classifier = _networks()
    with pytest.warns(DeprecationWarning, match="feature_extractor= is now backbone="):
        old = cls(feature_extractor=backbone, classifier=classifier)
    assert old.backbone is backbone
    with pytest.raises(TypeError, match="both backbone= and its old name feature_extractor="):
        cls(backbone, classifier, feature_extractor=backbone)


def test_zero_shot_takes_its_image_network_as_backbone():
    backbone = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten()])
    table = np.eye(3, 5, dtype="float32")
    attributes = keras.layers.Dense(64)
    new = kt.ZeroShotClassifier(
        backbone=backbone, attribute_encoder=attributes, class_attributes=table
    )
    with pytest.warns(DeprecationWarning, match="image_encoder= is now backbone="):
        old = kt.ZeroShotClassifier(
            image_encoder=backbone, attribute_encoder=attributes, class_attributes=table
        )
    assert new.backbone is old.backbone is backbone


def test_the_new_keywords_raise_no_warning():
    backbone, classifier = _networks()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter = adapt.DiscrepancyAdapter(backbone, classifier, discrepancy_weight=0.5)
        adapt.DANNSchedule(lr_decay=5.0, lr_power=0.5)
        kt.l2_sp(keras.Sequential([backbone, classifier]), backbone, sp_weight=0.1, l2_weight=0.0)
    assert not [w for w in caught if "is now" in str(w.message)]
    assert adapter.discrepancy_weight == 0.5


@pytest.mark.parametrize(
    "build, old, new, attribute, value",
    [
        (
            lambda **k: adapt.DiscrepancyAdapter(*_networks(), **k),
            "weight",
            "discrepancy_weight",
            "discrepancy_weight",
            0.7,
        ),
        (lambda **k: adapt.DANNSchedule(**k), "alpha", "lr_decay", "lr_decay", 4.0),
        (lambda **k: adapt.DANNSchedule(**k), "beta", "lr_power", "lr_power", 0.5),
    ],
)
def test_an_old_weight_keyword_still_sets_the_renamed_one(build, old, new, attribute, value):
    with pytest.warns(DeprecationWarning, match=f"{old}= is now {new}="):
        made = build(**{old: value})
    assert getattr(made, attribute) == value


def test_l2_sp_old_keywords_set_the_same_penalties():
    backbone, classifier = _networks()
    model = keras.Sequential([backbone, classifier])
    with pytest.warns(DeprecationWarning, match="alpha= is now sp_weight="):
        kt.l2_sp(model, classifier, alpha=0.25, l2_weight=0.0)
    assert classifier.weights[0].regularizer.strength == 0.25
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['gamma'\]"):
        kt.l2_sp(model, classifier, gamma=1.0)


def test_a_saved_adapter_keeps_the_backbone_weights_where_the_first_release_put_them(tmp_path):
    adapter = make_adapter("dann", seed=0)
    adapter.compile(keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    adapter.fit(kt.domain_pairs((x, np.arange(4)), x, batch_size=2), epochs=1, verbose=0)
    path = os.path.join(tmp_path, "dann.keras")
    adapter.save(path)
    with zipfile.ZipFile(path) as archive:
        archive.extract("model.weights.h5", tmp_path)
    names = []
    with h5py.File(os.path.join(tmp_path, "model.weights.h5")) as weights:
        weights.visit(names.append)
    assert any(n.startswith("feature_extractor/") for n in names)
    assert not any(n.startswith("backbone") for n in names), names
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.backbone is loaded.feature_extractor
