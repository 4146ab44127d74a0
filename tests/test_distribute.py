"""Custom train_steps give the same result under MirroredStrategy (two logical CPUs) as without,
and under MultiWorkerMirroredStrategy (two worker processes on localhost).

Each case runs in a fresh process: logical devices must be set before TensorFlow starts, and
several MirroredStrategy runs in one process collide in their collective ops.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.adapters import ADAPTERS
from tests.conftest import REPO

# The cases of tests/distributed_equality.py that train one of the toolkit's Keras 3 models: every
# adaptation method of the harness table among them.
MODELS = [
    "distiller_kl",
    "distiller_keras_strategy",
    *(f"adapter_{name}" for name in ADAPTERS),
    "multitask",
    "zeroshot",
]


def run_case(case):
    env = {**os.environ, "PYTHONPATH": REPO, "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "distributed_equality.py"), case],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])[case]


@pytest.mark.parametrize("case", MODELS)
def test_same_weights_and_logs_with_and_without_a_strategy(case):
    found = run_case(case)
    assert found["max_weight_change"] > 1e-3, "training moved the weights"
    assert found["max_weight_diff"] < 1e-5, found
    assert found["max_log_diff"] < 1e-4, found


@pytest.mark.parametrize("case", ["distiller_uneven_batch", "adapter_dann_uneven_batch"])
def test_a_global_batch_split_unevenly_over_replicas_trains_like_one_device(case):
    # Keras' build summed the replicas' shares (32 and 31 rows) and failed in AddN. The
    # adapter's per-replica means of 32 and 31 pairs weigh rows a little unlike one mean of 63.
    found = run_case(case)
    assert found["max_weight_change"] > 1e-3, "training moved the weights"
    assert found["max_weight_diff"] < 1e-3, found


def test_quantize_aware_distillation_under_a_strategy_differs_only_by_range_averaging():
    """tfmot updates each activation range by assign_moving_average, which under a strategy
    averages the replicas' own batch min/max (decay 0.999) where one device takes the global
    batch's: a difference of at most 0.001 x the spread between replicas per step. Measured
    on two CPUs: ranges 5e-4 apart, kernels 7e-5, losses 5e-6, one prediction in 1,024 flipped."""
    found = run_case("qat_distiller")
    assert found["max_weight_change"] > 1e-3, "training moved the weights"
    assert found["max_weight_diff"] < 2e-3, found
    assert found["max_log_diff"] < 3 / 1024, found


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run_on_two_workers(case, tmp_path, reference=False):
    """Runs tests/multiworker_equality.py as two workers (and the no-strategy reference): their npz
    files.
    """
    script = os.path.join(REPO, "tests", "multiworker_equality.py")
    env = {**os.environ, "PYTHONPATH": REPO, "KERAS_BACKEND": "tensorflow"}
    ports = ",".join(map(str, free_ports(2)))
    commands = {f"worker{i}": ["worker", case, str(i), ports] for i in range(2)}
    if reference:
        commands["reference"] = ["reference", case]
    processes = {
        name: subprocess.Popen(
            [sys.executable, script, *args, str(tmp_path / f"{name}.npz")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    try:
        errors = {name: process.communicate(timeout=600)[1] for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}: {errors[name][-3000:]}"
    return {name: dict(np.load(tmp_path / f"{name}.npz")) for name in processes}


def largest_difference(found, a, b):
    count = int(found[a]["count"])
    return max(float(np.abs(found[a][f"w{i}"] - found[b][f"w{i}"]).max()) for i in range(count))


def largest_log_difference(found, a, b):
    logs = [json.loads(str(found[name]["history"])) for name in (a, b)]
    return max(abs(x - y) for key in logs[0] for x, y in zip(logs[0][key], logs[1][key]))


@pytest.mark.parametrize("case", MODELS)
def test_same_weights_logs_and_predictions_on_two_workers_as_on_one_device(case, tmp_path):
    """Keras 3.15's fit() fails on several workers for every model (keras-team/keras#20585, a plain
    Sequential too); the toolkit's models run there, and match one device."""
    found = run_on_two_workers(case, tmp_path, reference=True)
    assert float(found["reference"]["moved"]) > 1e-3, "training moved the weights"
    assert largest_difference(found, "worker0", "worker1") == 0.0
    assert largest_difference(found, "worker0", "reference") < 1e-5
    assert largest_log_difference(found, "worker0", "reference") < 1e-4
    assert sorted(json.loads(str(found["worker0"]["history"]))) == sorted(
        json.loads(str(found["reference"]["history"]))
    )
    assert np.abs(found["worker0"]["predictions"] - found["reference"]["predictions"]).max() < 1e-4


def test_fine_tune_refuses_several_workers_by_name(tmp_path):
    """fine_tune trains a plain Keras model, which Keras 3.15 cannot fit on several workers."""
    for name, found in run_on_two_workers("fine_tune", tmp_path).items():
        message = str(found.get("refused", ""))
        assert (
            "fine_tune trains a plain Keras model" in message
            and "keras-team/keras#20585" in message
        ), (name, found)


def test_quantize_aware_distillation_on_two_workers_matches_one_device(tmp_path):
    """tf_keras runs on several workers: two processes end with the same weights, equal to one
    device's up to tfmot's replica-averaged ranges (as under MirroredStrategy above)."""
    found = run_on_two_workers("qat_distiller", tmp_path, reference=True)
    assert float(found["reference"]["moved"]) > 1e-3, "training moved the weights"
    assert largest_difference(found, "worker0", "worker1") == 0.0
    assert largest_difference(found, "worker0", "reference") < 2e-3
    assert largest_log_difference(found, "worker0", "reference") < 3 / 1024
