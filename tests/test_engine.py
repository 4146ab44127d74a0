"""The backend guard, checked in fresh interpreters so each sees its own environment."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def run_python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "KERAS_HOME")}
    env.update(env_changes)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


def test_import_under_other_backend_env_says_how_to_fix():
    result = run_python("import keras_transfer", KERAS_BACKEND="numpy")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "'numpy' backend" in result.stderr
    assert "KERAS_BACKEND=tensorflow" in result.stderr


def test_import_under_other_backend_in_keras_json(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    result = run_python("import keras_transfer", KERAS_HOME=str(tmp_path))
    assert result.returncode != 0
    assert "'jax' backend" in result.stderr
    assert str(tmp_path / "keras.json") in result.stderr
    assert "KERAS_BACKEND=tensorflow" in result.stderr


def test_keras_already_running_another_backend():
    # Keras' other backends need jax, torch or openvino, none of which this
    # project installs: report another backend from an imported keras instead.
    code = "import keras; keras.backend.backend = lambda: 'jax'; import keras_transfer"
    result = run_python(code)
    assert result.returncode != 0
    assert "'jax' backend" in result.stderr
    assert "an earlier import of keras" in result.stderr


def test_import_adds_no_heavy_package_to_tensorflow_and_keras():
    code = (
        "import sys, os, tensorflow, keras; before = set(sys.modules); "
        "import keras_transfer; "
        "added = sorted({m.split('.')[0] for m in set(sys.modules) - before}); "
        "print('added:', added); "
        "print('legacy:', os.environ.get('TF_USE_LEGACY_KERAS'))"
    )
    result = run_python(code, KERAS_BACKEND="tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    added = result.stdout.split("added:")[1].splitlines()[0]
    for heavy in ("tensorflow_hub", "tensorflow_model_optimization", "tf_keras", "ai_edge_litert"):
        assert heavy not in added
    assert "legacy: None" in result.stdout


def test_cli_under_other_backend_ends_with_the_fix():
    result = subprocess.run(
        [sys.executable, "-m", "keras_transfer.cli", "demo", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": "numpy", "PYTHONPATH": REPO},
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: keras-transfer needs Keras 3")
    assert "KERAS_BACKEND=tensorflow" in last_line
