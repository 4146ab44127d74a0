"""Run by tests/test_distribute.py: one process of a MultiWorkerMirroredStrategy run, or the reference.

    python multiworker_equality.py reference CASE OUT.npz
    python multiworker_equality.py worker CASE INDEX PORT0,PORT1 OUT.npz

Each worker is a process with a TF_CONFIG naming both workers on localhost; they build the
case's model in the strategy's scope and fit it on the same global batches, which the strategy
splits between the workers. The reference trains the same model without a strategy. Each writes
the final weights, how far they moved and the history to OUT.npz (worker 1 too, so the test sees both copies agree),
or the error's message where fit() refused to start.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv):
    role, case = argv[0], argv[1]
    if role == "worker":
        index, ports, out = int(argv[2]), argv[3].split(","), argv[4]
        os.environ["TF_CONFIG"] = json.dumps({
            "cluster": {"worker": [f"localhost:{port}" for port in ports]},
            "task": {"type": "worker", "index": index}})
    else:
        out = argv[2]
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy() if role == "worker" else tf.distribute.get_strategy()
    from tests.distributed_equality import CASES  # after the strategy: it must come before other TF work
    from tests.distributed_equality import SINGLE_CALL_CASES

    if case in SINGLE_CALL_CASES:
        with strategy.scope():
            weights, history, start = SINGLE_CALL_CASES[case]()()
    else:
        build, fit = CASES[case]()
        with strategy.scope():
            model, trained = build()
        try:
            history = fit(model)
        except RuntimeError as error:  # the Keras 3 models refuse several workers: the message is the result
            np.savez(out, refused=str(error))
            return
        start, weights = build()[1].get_weights(), trained.get_weights()
    moved = max(float(np.abs(a - b).max()) for a, b in zip(weights, start))
    np.savez(out, history=json.dumps(history), moved=moved, count=len(weights),
             **{f"w{i}": w for i, w in enumerate(weights)})


if __name__ == "__main__":
    main(sys.argv[1:])
