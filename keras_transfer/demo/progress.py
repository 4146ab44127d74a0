"""One line per demo stage: live in a terminal (step and ETA), final only when piped."""

import sys
import time

import keras


class StageProgress(keras.callbacks.Callback):
    """Prints `[i/n] stage  seconds` once per stage; in a terminal, the line counts steps first.

    `run_demo` calls `begin(index, count, name)` and `end(seconds)` around each
    stage and passes the object as a Keras callback to the stage's `fit` calls.
    The live line is redrawn with a carriage return, never with terminal codes,
    and only when `live` (default: the stream is a terminal).

    Args:
        stream: where to write (default `sys.stdout`).
        live: redraw a step counter and ETA while a stage trains.

    Example:
    >>> progress = StageProgress(live=False)
    >>> progress.begin(0, 10, "source model")
    >>> progress.end(1.25)
    [1/10] source model  1.2 s
    """

    def __init__(self, stream=None, live=None):
        super().__init__()
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._prefix = ""
        self._width = 0
        self._plan = None

    def plan(self, names):
        """Numbers stages by their place in `names` from now on, whatever `begin` is told."""
        self._plan = list(names)

    def begin(self, index, count, name):
        if self._plan is not None and name in self._plan:
            index, count = self._plan.index(name), len(self._plan)
        self._prefix = f"[{index + 1}/{count}] {name}"
        self._write(self._prefix)

    def end(self, seconds):
        self._write(f"{self._prefix}  {seconds:.1f} s", final=True)

    def on_train_begin(self, logs=None):
        self._steps = (self.params.get("steps") or 0) * (self.params.get("epochs") or 0)
        self._done = 0
        self._epoch = 0
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        self._done += 1
        if not self.live or self._done % 5:
            return
        elapsed = time.perf_counter() - self._start
        epochs = self.params.get("epochs") or 0
        text = f"{self._prefix}  epoch {self._epoch}/{epochs}  step {self._done}"
        if self._steps:
            eta = elapsed / self._done * max(self._steps - self._done, 0)
            text += f"/{self._steps}  ETA {eta:.0f} s"
        self._write(text)

    def _write(self, text, final=False):
        if self.live:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            if final:
                self.stream.write("\n")
                self._width = 0
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()
