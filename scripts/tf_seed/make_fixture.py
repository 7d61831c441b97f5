"""Write tests/data/tf_checkpoint_small/: a tiny checkpoint saved by TensorFlow's own tf.train.Saver, so
the fast tests check our reader against bytes TensorFlow wrote (not only against our own writer).

Runs in the reference venv (tensorflow-cpu): `TFREF/venv/bin/python scripts/tf_seed/make_fixture.py`.
The values are formulas of the index (`expected_values` in tests/test_tf_import.py recomputes them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "tf_checkpoint_small"


def values() -> dict[str, np.ndarray]:
    """The fixture's variables: the seed's names and dtypes, optimizer state, and enough entries
    (60) for several restart points with shared key prefixes in the index block."""
    out = {
        "conv1_1_3x3_s2/weights": (np.arange(108).reshape(3, 3, 3, 4) * 0.01 - 0.5).astype(np.float32),
        "conv1_1_3x3_s2_bn/gamma": np.linspace(0.5, 1.0, 4).astype(np.float32),
        "conv1_1_3x3_s2_bn/beta": np.linspace(-0.1, 0.1, 4).astype(np.float32),
        "conv1_1_3x3_s2_bn/moving_mean": np.arange(4).astype(np.float32) * 0.25,
        "conv1_1_3x3_s2_bn/moving_variance": np.arange(1, 5).astype(np.float32),
        "conv6/biases": np.array([0.5, -1.5, 2.25], np.float32),
        "half_values": (np.arange(6).reshape(2, 3) / 4).astype(np.float16),
        "double_values": np.arange(5) / 3.0,
        "int_values": np.arange(4, dtype=np.int32).reshape(2, 2) - 2,
        "global_step": np.array(7, np.int64),
        "beta1_power": np.array(0.9, np.float32),
    }
    for i in range(40):
        out[f"conv4_{i + 1}_1x1_reduce/weights"] = (np.arange(i + 1) * 0.5 + i).astype(np.float32)
    return out


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as real_tf  # the reference venv only; the tests import values() without it

    tf = real_tf.compat.v1
    tf.disable_v2_behavior()
    vals = values()
    variables = []
    with tf.Graph().as_default(), tf.Session() as sess:
        for name, value in vals.items():
            variables.append(tf.get_variable(name, initializer=tf.constant(value), trainable=False))
        # a slot as MomentumOptimizer names it: `<var>/Momentum`
        slot = tf.get_variable("conv1_1_3x3_s2/weights/Momentum",
                               initializer=tf.constant(np.full((3, 3, 3, 4), 0.125, np.float32)))
        sess.run(tf.global_variables_initializer())
        OUT.mkdir(parents=True, exist_ok=True)
        saver = tf.train.Saver(var_list=[*variables, slot])
        path = saver.save(sess, str(OUT / "model.ckpt"), global_step=7, write_meta_graph=False)
    # TF wrote this machine's absolute path into `checkpoint`; a downloaded folder names the saving
    # machine's: written so, the tests see what users of the seed see (its issue #57)
    foreign = "/home/user/PSPNet-tensorflow/model/model.ckpt-7"
    (OUT / "checkpoint").write_text((OUT / "checkpoint").read_text().replace(path, foreign))
    print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
