"""Training callbacks shared by every model of the toolkit."""

import math

import keras


class NonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first batch whose loss terms are NaN or inf, naming the terms.

    Keras' `TerminateOnNaN` watches the total; this watches every logged value
    whose name contains "loss" (task_loss, distillation_loss, domain_loss,
    discrepancy_loss, <task>_loss, ...), so the message says which part of
    the objective broke. The message is printed, kept in `self.message`, and
    raised as a `FloatingPointError` after training stops when `raise_error`.
    The toolkit's models apply no gradient on a step whose loss is not finite,
    so the weights stay as they were before it.

    Args:
        raise_error: raise once `fit` has stopped instead of only printing.

    Example:
    >>> distiller.fit(x, epochs=5, callbacks=[NonFiniteLoss()])  # doctest: +SKIP
    """

    def __init__(self, raise_error=True):
        super().__init__()
        self.raise_error = bool(raise_error)
        self.message = None
        self.terms = []

    def on_train_begin(self, logs=None):
        self.message, self.terms, self._epoch = None, [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        broken = {
            name: float(value)
            for name, value in (logs or {}).items()
            if "loss" in name and not math.isfinite(float(value))
        }
        if not broken:
            return
        finite = {
            name: float(value)
            for name, value in logs.items()
            if "loss" in name and name not in broken
        }
        culprits = [name for name in broken if name != "loss"] or ["loss"]
        self.terms = culprits
        self.message = (
            f"training stopped at epoch {self._epoch + 1}, batch {batch + 1}: "
            f"{', '.join(f'{name} = {broken[name]}' for name in culprits)}"
            + (
                f" (finite: {', '.join(f'{k} = {v:.4g}' for k, v in finite.items())})"
                if finite
                else ""
            )
            + ". Lower the learning rate or that term's weight, or look for NaN/inf in the inputs."
        )
        print(self.message)
        self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.message and self.raise_error:
            raise FloatingPointError(self.message)
