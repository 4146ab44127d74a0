"""Silencing native libraries' stderr for the command line (no TensorFlow import here)."""

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """Lines native libraries write straight to file descriptor 2 (LiteRT's "Created TensorFlow
    Lite XNNPACK delegate", the quantizer's settings) go nowhere; Python's own stderr, where
    errors are reported, still reaches the terminal."""
    sys.stderr.flush()
    try:
        on_descriptor_2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a captured stream: not fd 2 anyway
        on_descriptor_2 = False
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    python_stderr = sys.stderr
    if on_descriptor_2:
        sys.stderr = os.fdopen(
            os.dup(terminal),
            "w",
            buffering=1,
            encoding=python_stderr.encoding,
            errors=python_stderr.errors,
        )
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        if on_descriptor_2:  # flushed, not closed: log handlers made meanwhile may hold it
            sys.stderr.flush()
            sys.stderr = python_stderr
        os.dup2(terminal, 2)
        os.close(terminal)
        os.close(devnull)
