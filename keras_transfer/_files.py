"""Writing files so that nothing is lost: no partial file, nothing replaced unless asked."""

import contextlib
import os
import shutil
import tempfile


def check_target(path, overwrite):
    """The absolute `path`, its folder created; FileExistsError if it exists and not `overwrite`."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it.")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


class staging_dir:
    """A temporary folder beside `path`, so the final rename stays on one file system."""

    def __init__(self, path):
        self._parent = os.path.dirname(path)
        self._prefix = "." + os.path.basename(path) + ".tmp-"

    def __enter__(self):
        self.name = tempfile.mkdtemp(prefix=self._prefix, dir=self._parent)
        return self.name

    def __exit__(self, *exc_info):
        shutil.rmtree(self.name, ignore_errors=True)
        return False


def replace_path(staged, path):
    """Moves `staged` to `path`; an old `path` is set aside until the move succeeds."""
    if not os.path.exists(path):
        os.rename(staged, path)
        return
    if os.path.isfile(path) and os.path.isfile(staged):
        os.replace(staged, path)
        return
    aside = staged + ".old"
    os.rename(path, aside)
    try:
        os.rename(staged, path)
    except OSError:
        os.rename(aside, path)
        raise
    if os.path.isdir(aside):
        shutil.rmtree(aside)
    else:
        os.remove(aside)


@contextlib.contextmanager
def atomic_file(path, suffix=""):
    """Yields a temporary file path beside `path`; renamed to `path` when the block succeeds.

    On an error the temporary file is removed and `path` is left as it was.
    `suffix` keeps an extension that writers read (e.g. ".png" for matplotlib).
    """
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix="." + os.path.basename(path) + ".tmp-", suffix=suffix
    )
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
