"""A schedule for the Distiller's label weight `alpha`, e.g. to stop distilling after some epochs.

Cho & Hariharan (2019) found that a teacher much stronger than its student
can teach worse, and that stopping the distillation term early (the student
then trains on the labels alone) recovers the gain.
"""

import keras

from keras_transfer._checks import require_number
from keras_transfer.distill.distiller import Distiller


class DistillationSchedule(keras.callbacks.Callback):
    """Sets a Distiller's `alpha` at the start of each epoch from `schedule(epoch)`.

    Args:
        schedule: a function from the epoch index (from 0) to alpha in [0, 1].

    Example:
    >>> stop_at_30 = DistillationSchedule(lambda epoch: 0.1 if epoch < 30 else 1.0)
    >>> stop_at_30.schedule(29), stop_at_30.schedule(30)
    (0.1, 1.0)
    >>> distiller.fit(x, y, epochs=40, callbacks=[stop_at_30])  # doctest: +SKIP
    """

    def __init__(self, schedule):
        super().__init__()
        if not callable(schedule):
            raise TypeError(
                "schedule must be a function from the epoch to alpha; got "
                f"{type(schedule).__name__}."
            )
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        alpha = require_number(self.schedule(epoch), "schedule(epoch)", maximum=1.0)
        if not isinstance(self.model, Distiller):
            raise TypeError(
                "DistillationSchedule trains a Distiller; it was given "
                f"{type(self.model).__name__}."
            )
        if alpha != self.model.alpha:
            self.model.alpha = alpha
            self.model.make_train_function(force=True)  # the step reads alpha when traced
