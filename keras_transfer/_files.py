"""Writing files so that nothing is lost: no partial file, nothing replaced unless asked.

Every writer stages its output beside the target (same file system) and moves it into place at
the end. Without `overwrite`, the move refuses a target that appeared meanwhile, atomically. With
`overwrite`, only what the toolkit itself writes there is replaced: a file of the same kind
(a `.tflite` model, a PNG, ...) or a SavedModel folder; anything else, a user's folder or file,
is refused whatever the flag. Staging left by a killed process is removed by the next write.
"""

import contextlib
import ctypes
import errno
import functools
import os
import shutil
import tempfile

# What a file of each kind starts with, as `(offset, bytes)`; None: any regular file.
_SIGNATURES = {
    "tflite": (4, b"TFL3"),
    "png": (0, b"\x89PNG\r\n\x1a\n"),
    "json": None,
    "text": None,
    "keras": (0, b"PK\x03\x04"),
    "npy": (0, b"\x93NUMPY"),
    "npz": (0, b"PK\x03\x04"),
}
# What `model.export()` / `tf.saved_model.save` write in a SavedModel folder.
_SAVED_MODEL_ENTRIES = {
    "saved_model.pb",
    "saved_model.pbtxt",
    "fingerprint.pb",
    "keras_metadata.pb",
    "variables",
    "assets",
    "assets.extra",
}


def check_target(path, overwrite, kind):
    """The absolute `path`, its folder created, abandoned staging beside it removed.

    Args:
        path: where the writer will put its output.
        overwrite: whether an existing output of `kind` there may be replaced.
        kind: "saved_model" (a folder) or a file kind of `_SIGNATURES` ("tflite", "png", ...).

    Raises:
        ValueError: `path` is empty.
        FileExistsError: `path` exists and `overwrite` is False, or it holds something that is
            not a `kind` output (a user's folder or file): that is never replaced.
    """
    raw = os.fspath(path)
    if not raw or raw.endswith(("/", os.sep)):
        raise ValueError(f"path must name the {_describe(kind)} to write; got {raw!r}.")
    path = os.path.abspath(raw)
    if os.path.lexists(path):
        if not overwrite:
            raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it.")
        reason = _not_ours(path, kind)
        if reason:
            raise FileExistsError(
                f"{path!r} is {reason}; overwrite=True replaces only a {_describe(kind)} that "
                "keras-transfer wrote, so it is left as it is. Choose another path."
            )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    remove_abandoned_staging(path)
    return path


def _describe(kind):
    return "SavedModel folder" if kind == "saved_model" else f"{kind} file"


def _not_ours(path, kind):
    """Why `path` is not an output of `kind` (a short phrase), or None if it is one."""
    if os.path.islink(path):
        return "a symbolic link"
    if kind == "saved_model":
        if not os.path.isdir(path):
            return "a file, not a SavedModel folder"
        entries = set(os.listdir(path))
        if "saved_model.pb" not in entries:
            return "a folder that is not a SavedModel (it has no saved_model.pb)"
        foreign = sorted(entries - _SAVED_MODEL_ENTRIES)
        if foreign:
            return f"a SavedModel folder that also holds other files ({foreign[:5]})"
        return None
    if not os.path.isfile(path):
        return f"a folder, not a {kind} file"
    signature = _SIGNATURES[kind]
    if signature is not None:
        offset, magic = signature
        with open(path, "rb") as f:
            if f.read(offset + len(magic))[offset:] != magic:
                return f"a file that is not a {kind} file"
    return None


# -- staging ---------------------------------------------------------------------------------


def _staging_prefix(path):
    return "." + os.path.basename(path) + ".tmp-"


def remove_abandoned_staging(path):
    """Removes staging beside `path` whose writing process has ended (a killed export's)."""
    folder, prefix = os.path.dirname(path), _staging_prefix(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].split("-", 1)[0] if name.startswith(prefix) else ""
        if pid.isdigit() and not _alive(int(pid)):
            leftover = os.path.join(folder, name)
            if os.path.isdir(leftover) and not os.path.islink(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(leftover)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class staging_dir:
    """A temporary folder beside `path` (named with this process's id), removed on exit."""

    def __init__(self, path):
        self._parent = os.path.dirname(path)
        self._prefix = f"{_staging_prefix(path)}{os.getpid()}-"

    def __enter__(self):
        self.name = tempfile.mkdtemp(prefix=self._prefix, dir=self._parent)
        return self.name

    def __exit__(self, *exc_info):
        shutil.rmtree(self.name, ignore_errors=True)
        return False


# -- the final move --------------------------------------------------------------------------

_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


@functools.cache
def _renameat2():
    """libc's renameat2, or None where the C library has none."""
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _rename_no_replace(staged, path):
    """Renames `staged` to `path`, failing with FileExistsError if `path` exists, atomically."""
    if os.path.isfile(staged):
        # A hard link fails if the name is taken; the staged name then goes.
        try:
            os.link(staged, path)
        except FileExistsError:
            raise
        except OSError:
            pass  # no hard links on this file system: the checked rename below
        else:
            os.remove(staged)
            return
    renameat2 = _renameat2()
    if renameat2 is not None:
        result = renameat2(
            _AT_FDCWD, os.fsencode(staged), _AT_FDCWD, os.fsencode(path), _RENAME_NOREPLACE
        )
        if result == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            raise FileExistsError(errno.EEXIST, "exists", path)
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), path)
    if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "exists", path)
    os.rename(staged, path)  # a folder: fails on a non-empty folder that appeared meanwhile


def replace_path(staged, path, overwrite, kind):
    """Moves `staged` to `path`: a new name atomically; with `overwrite`, our old output aside.

    Raises:
        FileExistsError: `path` was taken meanwhile (by a user or another process) and may not
            be replaced (see `check_target`).
    """
    try:
        _rename_no_replace(staged, path)
        return
    except FileExistsError:
        if not overwrite:
            raise FileExistsError(
                f"{path!r} appeared while this export ran; it is left as it is."
            ) from None
    reason = _not_ours(path, kind)
    if reason:
        raise FileExistsError(
            f"{path!r} is {reason} (it changed while this export ran); it is left as it is."
        )
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
def atomic_file(path, suffix="", overwrite=True, kind="json"):
    """Yields a temporary file path beside `path`; moved to `path` when the block succeeds.

    On an error the temporary file is removed and `path` is left as it was.
    `suffix` keeps an extension that writers read (e.g. ".png" for matplotlib).
    The move follows `replace_path`: a name taken meanwhile is replaced only if
    `overwrite` and it holds a `kind` file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        dir=folder, prefix=f"{_staging_prefix(path)}{os.getpid()}-", suffix=suffix
    )
    os.close(handle)
    try:
        yield temporary
        replace_path(temporary, os.path.abspath(path), overwrite, kind)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
