"""Nothing the user owns is lost: overwrite=True replaces only the toolkit's own output, a name
taken while an export runs is never replaced, a killed export's staging goes on the next call."""

import os
import subprocess
import sys

import pytest

import keras_transfer as kt
from keras_transfer._files import check_target
from keras_transfer._files import replace_path
from keras_transfer._files import staging_dir


def user_folder(tmp_path, name="mine"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "train.csv").write_text("a,b\n1,2\n")
    return folder


def test_overwrite_never_replaces_a_users_folder(trained_digits_model, tmp_path):
    folder = user_folder(tmp_path)
    with pytest.raises(FileExistsError, match="a folder, not a tflite file"):
        kt.export_tflite(trained_digits_model, folder, overwrite=True)
    with pytest.raises(FileExistsError, match="not a SavedModel"):
        kt.export_saved_model(trained_digits_model, folder, overwrite=True)
    assert (folder / "train.csv").read_text() == "a,b\n1,2\n"
    assert sorted(os.listdir(tmp_path)) == ["mine"], "no staging left behind"


def test_a_saved_model_folder_holding_a_users_file_is_not_replaced(trained_digits_model, tmp_path):
    served = tmp_path / "served"
    kt.export_saved_model(trained_digits_model, served)
    (served / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="other files"):
        kt.export_saved_model(trained_digits_model, served, overwrite=True)
    assert (served / "notes.txt").read_text() == "mine"


def test_an_empty_path_is_refused_before_any_work(trained_digits_model, tmp_path, monkeypatch):
    monkeypatch.chdir(user_folder(tmp_path))
    for export in (kt.export_tflite, kt.export_saved_model):
        with pytest.raises(ValueError, match="path must name"):
            export(trained_digits_model, "", overwrite=True)
    assert sorted(os.listdir(".")) == ["train.csv"]


@pytest.mark.parametrize("kind", ["tflite", "saved_model"])
def test_a_name_taken_while_an_export_runs_is_not_replaced(tmp_path, kind):
    """Another process (or the user) takes the name between the check and the final move."""
    target = str(tmp_path / "out")
    check_target(target, overwrite=False, kind=kind)
    with staging_dir(target) as staging:
        staged = os.path.join(staging, "result")
        if kind == "saved_model":
            os.mkdir(staged)
            open(os.path.join(staged, "saved_model.pb"), "wb").close()
            os.mkdir(target)  # even an empty folder: renaming onto it would replace it
        else:
            open(staged, "wb").close()
            with open(target, "w") as f:
                f.write("the other process's file")
        with pytest.raises(FileExistsError, match="appeared"):
            replace_path(staged, target, overwrite=False, kind=kind)
    if kind == "saved_model":
        assert os.listdir(target) == []
    else:
        assert open(target).read() == "the other process's file"


def test_staging_of_a_killed_export_goes_on_the_next_call(trained_digits_model, tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    target = tmp_path / "m.tflite"
    abandoned = tmp_path / f".m.tflite.tmp-{int(dead.stdout)}-x1"
    abandoned.mkdir()
    (abandoned / "model.tflite").write_bytes(b"half")
    live = tmp_path / f".m.tflite.tmp-{os.getpid()}-x2"  # a running export's: kept
    live.mkdir()
    kt.export_tflite(trained_digits_model, target)
    assert not abandoned.exists() and live.exists() and target.exists()


def test_a_demo_folder_holding_a_users_file_is_not_replaced(tmp_path):
    from keras_transfer.demo.run import _remove_earlier_run

    run = tmp_path / "demo-digits"
    run.mkdir()
    (run / "demo_report.json").write_text("{}")
    (run / "my_notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write"):
        _remove_earlier_run(str(run))
    assert (run / "my_notes.txt").read_text() == "mine"
    (run / "my_notes.txt").unlink()
    _remove_earlier_run(str(run))
    assert not run.exists()
