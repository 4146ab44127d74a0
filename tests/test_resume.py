"""Fault tolerance: a training process killed mid-epoch resumes with BackupAndRestore and ends where
an
uninterrupted run ends (deterministic ops, fixed batch order)."""

import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO

SCRIPT = os.path.join(REPO, "tests", "resume_training.py")


def train(folder, *extra):
    env = {**os.environ, "PYTHONPATH": REPO, "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(
        [sys.executable, SCRIPT, str(folder), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def weights(folder):
    with np.load(folder / "final.npz") as saved:
        return [saved[key] for key in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


def test_killed_mid_epoch_then_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    straight.mkdir()
    interrupted.mkdir()
    uninterrupted = train(straight)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    assert "epochs run: 0 1 2 3" in uninterrupted.stdout
    killed = train(interrupted, "--die-at", "2", "7")  # third epoch, eighth batch
    assert killed.returncode == 17, killed.stderr[-2000:]
    assert not (interrupted / "final.npz").exists()
    assert (interrupted / "backup").is_dir(), "BackupAndRestore wrote no backup before the kill"
    resumed = train(interrupted)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "epochs run: 2 3" in resumed.stdout, (
        "it must resume at the interrupted epoch, not start over"
    )
    expected, got = weights(straight), weights(interrupted)
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    assert not (interrupted / "backup").exists(), "the backup is removed once training has finished"
