"""Run by tests/test_distribute.py: one process of a MultiWorkerMirroredStrategy run, or the
reference.

    python multiworker_equality.py reference CASE OUT.npz
    python multiworker_equality.py worker CASE INDEX PORT0,PORT1 OUT.npz

Each worker is a process with a TF_CONFIG naming both workers on localhost; they build the
case's model in the strategy's scope and fit it on the same global batches, which the strategy
splits between the workers. The reference trains the same model without a strategy. Each writes
the final weights, how far they moved, the history and predictions on 128 images to OUT.npz
(worker 1 too, so the test sees both copies agree), or the message of a call that refused.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv):
    role, case = argv[0], argv[1]
    if role == "worker":
        index, ports, out = int(argv[2]), argv[3].split(","), argv[4]
        os.environ["TF_CONFIG"] = json.dumps(
            {
                "cluster": {"worker": [f"localhost:{port}" for port in ports]},
                "task": {"type": "worker", "index": index},
            }
        )
    else:
        out = argv[2]
    import numpy as np
    import tensorflow as tf

    strategy = (
        tf.distribute.MultiWorkerMirroredStrategy()
        if role == "worker"
        else tf.distribute.get_strategy()
    )
    import keras  # after the strategy, which must come before other TF work

    import keras_transfer as kt
    from tests.distributed_equality import CASES
    from tests.distributed_equality import SINGLE_CALL_CASES
    from tests.distributed_equality import X
    from tests.distributed_equality import Y
    from tests.distributed_equality import lenet

    if case == "fine_tune":  # a plain Keras model: refused by name
        try:
            with strategy.scope():
                kt.fine_tune(
                    lenet()[0], keras.layers.Dense(10), (X, Y), head_epochs=1, fine_tune_epochs=1
                )
        except RuntimeError as error:
            np.savez(out, refused=str(error))
        return
    outputs = {}
    if case in SINGLE_CALL_CASES:
        with strategy.scope():
            weights, history, start = SINGLE_CALL_CASES[case]()()
    else:
        build, fit = CASES[case]()
        with strategy.scope():
            model, trained = build()
        history = fit(model)
        start, weights = build()[1].get_weights(), trained.get_weights()
        predictions = keras.tree.flatten(model.predict(X[:128], batch_size=32, verbose=0))
        outputs["predictions"] = np.concatenate([np.ravel(p) for p in predictions])
    moved = max(float(np.abs(a - b).max()) for a, b in zip(weights, start))
    np.savez(
        out,
        history=json.dumps(history),
        moved=moved,
        count=len(weights),
        **outputs,
        **{f"w{i}": w for i, w in enumerate(weights)},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
