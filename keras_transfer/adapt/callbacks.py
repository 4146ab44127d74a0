"""DANNSchedule, the lambda and learning-rate ramps of Ganin et al. (2016); CollapseGuard."""

import math
import warnings

import keras

from keras_transfer._checks import renamed_argument
from keras_transfer._checks import require_no_more_arguments
from keras_transfer._checks import require_number


class DANNSchedule(keras.callbacks.Callback):
    """Sets lambda_p = 2/(1+exp(−gamma·p)) − 1 and lr = mu_0/(1+lr_decay·p)^lr_power each step.

    p goes from 0 to 1 over the whole `fit()` (epochs × steps per epoch).
    lambda_p is written into any `Adapter`'s `strength` variable (what it
    scales is the method's: the reversal strength, a discrepancy's weight) and
    lr into the optimizer's learning rate: no retracing.

    Args:
        mu_0: initial learning rate; default the optimizer's at the start of fit.
        gamma: steepness of the lambda ramp (10 in the paper).
        lr_decay, lr_power: learning-rate decay (the paper's alpha = 10 and
            beta = 0.75; `alpha=` and `beta=` before 0.2).
        lambda_max: lambda reached at p = 1 (scales the ramp).
        schedule_learning_rate: False leaves the learning rate alone.

    Example:
    >>> dann.fit(pairs, epochs=10, callbacks=[DANNSchedule()])  # doctest: +SKIP
    """

    def __init__(
        self,
        mu_0=None,
        gamma=10.0,
        lr_decay=10.0,
        lr_power=0.75,
        lambda_max=1.0,
        schedule_learning_rate=True,
        **renamed,
    ):
        lr_decay = renamed_argument(renamed, "alpha", "lr_decay", lr_decay, 10.0, "DANNSchedule")
        lr_power = renamed_argument(renamed, "beta", "lr_power", lr_power, 0.75, "DANNSchedule")
        require_no_more_arguments(renamed, "DANNSchedule")
        super().__init__()
        self.mu_0 = None if mu_0 is None else require_number(mu_0, "mu_0", above=True)
        self.gamma = require_number(gamma, "gamma")
        self.lr_decay = require_number(lr_decay, "lr_decay")
        self.lr_power = require_number(lr_power, "lr_power")
        self.lambda_max = require_number(lambda_max, "lambda_max")
        self.schedule_learning_rate = bool(schedule_learning_rate)
        self.history = []

    @staticmethod
    def lambda_at(p, gamma=10.0):
        return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0

    @staticmethod
    def learning_rate_at(p, mu_0, lr_decay=10.0, lr_power=0.75):
        return mu_0 / (1.0 + lr_decay * p) ** lr_power

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "set_adaptation_strength"):
            raise ValueError(
                "DANNSchedule ramps the strength of a keras_transfer.adapt.Adapter (a model "
                f"with set_adaptation_strength); got a {type(self.model).__name__}."
            )
        steps = self.params.get("steps")
        if not steps:
            raise ValueError(
                "DANNSchedule needs the number of steps per epoch: pass steps_per_epoch to fit "
                "or data of known length."
            )
        self._total = max(1, self.params["epochs"] * steps)
        self._steps = steps
        if self.mu_0 is None:
            self.mu_0 = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        p = min(1.0, (self._epoch * self._steps + batch) / self._total)
        lambda_ = self.lambda_max * self.lambda_at(p, self.gamma)
        self.model.set_adaptation_strength(lambda_)
        if self.schedule_learning_rate:
            self.model.optimizer.learning_rate = self.learning_rate_at(
                p, self.mu_0, self.lr_decay, self.lr_power
            )
        self.history.append((p, lambda_))


class CollapseGuard(keras.callbacks.Callback):
    """Stops an adapter whose target predictions collapse to one class, and undoes the collapse.

    An adaptation term that is too strong can buy domain alignment by giving
    every target image the same class. After each epoch this reads the
    adapter's `target_class_share` log (the mean share of a target batch given
    its most frequent class); at `threshold` or above, while the source's
    `source_class_share` stays below it (a network that gives every image of
    both domains one class is untrained, not collapsed), it warns, naming the
    method's terms and weight arguments, and with `stop` it ends training
    and restores the weights from the start of the last epoch whose share
    stayed below the threshold (an epoch's mean lags its end). `Adapter.fit`
    adds one with the defaults.

    A target that truly is that lopsided (a binary task, 90% one class) trips
    it too: pass a higher `threshold` or `stop=False` there.

    Args:
        threshold: the share that counts as a collapse (a balanced 10-class
            batch of 64 gives about 0.2).
        stop: stop and restore (True) or only warn (False).

    Example:
    >>> adapter.fit(pairs, epochs=10, callbacks=[CollapseGuard(stop=False)])  # doctest: +SKIP
    """

    def __init__(self, threshold=0.9, stop=True):
        super().__init__()
        self.threshold = require_number(threshold, "threshold", above=True, maximum=1.0)
        self.stop = bool(stop)
        self.collapsed_epoch = None

    def on_train_begin(self, logs=None):
        self.collapsed_epoch = None
        self._healthy = self._epoch_start = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.stop:
            self._epoch_start = self.model.get_weights()
            if self._healthy is None:
                self._healthy = self._epoch_start

    def on_train_batch_end(self, batch, logs=None):
        # Variables a network creates at its first step (an unbuilt head) are missing from the
        # snapshot taken before it: retake it then, one step in.
        if self.stop and len(self._epoch_start) != len(self.model.weights):
            self._epoch_start = self.model.get_weights()
            if len(self._healthy) != len(self._epoch_start):
                self._healthy = self._epoch_start

    def on_epoch_end(self, epoch, logs=None):
        share = (logs or {}).get("target_class_share")
        if share is None:
            return
        if share < self.threshold or logs.get("source_class_share", 0.0) >= self.threshold:
            self._healthy = self._epoch_start
            return
        self.collapsed_epoch = epoch
        terms = ", ".join(getattr(self.model, "adaptation_terms", ())) or "its adaptation term"
        action = (
            "Training stopped; the weights from the start of the last epoch below it restored."
            if self.stop
            else "Training goes on (CollapseGuard(stop=False))."
        )
        warnings.warn(
            f"{type(self.model).__name__}: the target predictions collapsed at epoch {epoch + 1}: "
            f"{share:.0%} of each target batch went to one class (threshold "
            f"{self.threshold:.0%}). The adaptation term ({terms}) outweighs the task: lower its "
            f"weight argument or strength. {action}",
            RuntimeWarning,
            stacklevel=2,
        )
        if self.stop:
            self.model.set_weights(self._healthy)
            self.model.stop_training = True
