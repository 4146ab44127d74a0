"""`.keras` files saved by an earlier release (tests/fixtures, commit 19a8a22) load with today's
code
and predict exactly what they predicted when saved."""

import os

import keras
import numpy as np
import pytest

import keras_transfer  # noqa: F401  (registers the keras_transfer>... names)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SAVED = np.load(os.path.join(FIXTURES, "predictions.npz"))


@pytest.mark.parametrize("name", ["distiller", "dann", "discrepancy", "multitask"])
def test_a_file_saved_by_the_first_release_predicts_as_it_did(name):
    model = keras.saving.load_model(os.path.join(FIXTURES, f"{name}.keras"), safe_mode=True)
    outputs = model.predict(SAVED["inputs"], verbose=0)
    outputs = outputs if isinstance(outputs, dict) else {"": outputs}
    for key, value in outputs.items():
        np.testing.assert_allclose(
            value, SAVED[f"{name}.{key}" if key else name], rtol=1e-6, atol=1e-6
        )
    assert int(model.optimizer.iterations) > 0, "the optimizer state came back with the weights"
