"""The TensorFlow side of the seed check; runs in the SEPARATE reference venv (tensorflow-cpu), never
in the project's. It imports the seed's own model.py/network.py/tools.py/inference.py from SEED_DIR
(hellochick/PSPNet-tensorflow or its KITTI fork watsoncm/PSPNet-tensorflow; none of it is committed
here) under tf.compat.v1, and does two things:

  save   build the seed's network as its train.py does (is_training=True, the optimizer whose slots
         land in the checkpoint: Momentum for the seed, Adam for the fork), give it random weights
         and non-trivial BatchNorm statistics, and write them with its own tf.train.Saver
         (`model.ckpt-STEP.{index,data-00000-of-00001,meta}` + `checkpoint`)
  infer  run the seed's own inference.py `main()` on an image with that checkpoint folder (its
         --checkpoints flag), capturing the array it hands to scipy.misc.imsave (the colour-decoded
         prediction; the fork also saves the raw argmax) and mapping the colours back to class ids.

Usage (see scripts/tf_seed_check.py, which drives it):
  python seed_side.py save  SEED_DIR OUT_DIR --net PSPNet101 --classes 19 --size 720 --optimizer momentum
  python seed_side.py infer SEED_DIR CKPT_DIR IMAGE OUT.npy --dataset cityscapes
"""

from __future__ import annotations

import argparse
import os
import sys
import types

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1.layers needs Keras 2 (tf-keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as real_tf

tf = real_tf.compat.v1
tf.disable_v2_behavior()


def import_seed(seed_dir: str) -> None:
    """The seed's modules see `import tensorflow as tf` as tf.compat.v1 (the 1.x API they were
    written for), and `scipy.misc.imsave` (gone from SciPy) as a capture of what it is given."""
    sys.modules["tensorflow"] = tf
    misc = types.ModuleType("scipy.misc")
    misc.saved = {}  # type: ignore[attr-defined]

    def imsave(name: str, array: np.ndarray) -> None:
        misc.saved[os.path.basename(str(name))] = np.asarray(array)  # type: ignore[attr-defined]

    misc.imsave = imsave  # type: ignore[attr-defined]
    import scipy

    scipy.misc = misc  # type: ignore[attr-defined]
    sys.modules["scipy.misc"] = misc
    sys.path.insert(0, seed_dir)


def save(args: argparse.Namespace) -> None:
    import_seed(args.seed_dir)
    import model  # the seed's model.py

    tf.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net_class = getattr(model, args.net)
    image = tf.placeholder(tf.float32, [1, args.size, args.size, 3], name="image_batch")
    label = tf.placeholder(tf.int32, [1, args.size, args.size, 1], name="label_batch")
    net = net_class({"data": image}, is_training=True, num_classes=args.classes)
    raw_output = net.layers["conv6"]
    # train.py's loss and optimizer wiring, so the checkpoint holds its slot variables as a real
    # training run leaves them (`<var>/Momentum`; the fork: `<var>/Adam`, `<var>/Adam_1`, beta*_power)
    fc_list = ["conv5_3_pool1_conv", "conv5_3_pool2_conv", "conv5_3_pool3_conv", "conv5_3_pool6_conv",
               "conv6", "conv5_4"]
    trainable = [v for v in tf.trainable_variables() if "beta" not in v.name and "gamma" not in v.name]
    fc = [v for v in trainable if v.name.split("/")[0] in fc_list]
    conv = [v for v in trainable if v.name.split("/")[0] not in fc_list]
    fc_w = [v for v in fc if "weights" in v.name]
    fc_b = [v for v in fc if "biases" in v.name]
    small = tf.image.resize_nearest_neighbor(label, tf.shape(raw_output)[1:3])
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        logits=tf.reshape(raw_output, [-1, args.classes]), labels=tf.reshape(small, [-1])))
    opt = {"momentum": lambda lr: tf.train.MomentumOptimizer(lr, 0.9),
           "adam": lambda lr: tf.train.AdamOptimizer(lr)}[args.optimizer]
    grads = tf.gradients(loss, conv + fc_w + fc_b)
    train_op = tf.group(opt(1e-3).apply_gradients(zip(grads[:len(conv)], conv)),
                        opt(1e-2).apply_gradients(zip(grads[len(conv):len(conv) + len(fc_w)], fc_w)),
                        opt(2e-2).apply_gradients(zip(grads[len(conv) + len(fc_w):], fc_b)))
    del train_op  # built for its slot variables only; no step is run
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        # Random but well-conditioned weights: He-scaled kernels and BatchNorm statistics that are
        # not the identity (so the import of gamma/beta/mean/variance is really exercised).
        for var in tf.global_variables():
            name, shape = var.op.name, var.shape.as_list()
            if "/Momentum" in name or "/Adam" in name or "power" in name:
                continue
            if name.endswith("/weights"):
                fan_in = int(np.prod(shape[:3]))
                value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
            elif name.endswith("/biases"):
                value = rng.normal(0, 0.05, shape)
            elif name.endswith("/gamma"):  # conv5_4's larger: more classes win somewhere in the map
                value = rng.uniform(1.5, 3.0, shape) if name.startswith("conv5_4_bn") else \
                    rng.uniform(0.3, 0.6, shape)
            elif name.endswith("/beta") or name.endswith("/moving_mean"):
                value = rng.normal(0, 0.1, shape)
            elif name.endswith("/moving_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            else:
                continue
            var.load(value.astype(np.float32), sess)
        saver = tf.train.Saver(var_list=tf.global_variables(), max_to_keep=10)
        os.makedirs(args.out_dir, exist_ok=True)
        path = saver.save(sess, os.path.join(args.out_dir, "model.ckpt"), global_step=args.step)
    print(path)


def infer(args: argparse.Namespace) -> None:
    import_seed(args.seed_dir)
    os.chdir(args.seed_dir)  # tools.py reads ./utils/color150.mat relative to the seed's folder
    import inference  # the seed's inference.py
    import tools

    sys.argv = ["inference.py", f"--img-path={os.path.abspath(args.image)}", f"--dataset={args.dataset}",
                f"--checkpoints={os.path.abspath(args.ckpt_dir)}"]
    if args.flipped_eval:
        sys.argv.append("--flipped-eval")
    # main() ends in decode_labels(argmax) -> colours -> imsave. ADE20K's colour table repeats a
    # colour, so the class ids ride along as a 4th channel of what decode_labels returns, and the
    # logits the argmax read (resized, cropped) as further channels: the argmax is still the seed's
    # own, nothing else in its graph changes.
    decode = inference.decode_labels

    def decode_with_ids(mask, img_shape, num_classes):
        colours = decode(mask, img_shape, num_classes)
        ids = tf.reshape(tf.cast(mask, tf.float32), (1, img_shape[0], img_shape[1], 1))
        argmax = mask
        while argmax.op.type in ("Print", "PrintV2", "Identity"):  # the fork wraps it in tf.Print
            argmax = argmax.op.inputs[0]
        assert argmax.op.type == "ArgMax", argmax.op.type
        logits = argmax.op.inputs[0]
        return tf.concat([colours, ids, logits], axis=3)

    inference.decode_labels = decode_with_ids
    saved = sys.modules["scipy.misc"].saved
    real_makedirs = os.makedirs
    os.makedirs = lambda *a, **k: None  # its save dir: nothing is written there
    try:
        inference.main()
    finally:
        os.makedirs = real_makedirs
    out = saved[os.path.basename(args.image)]
    colours, ids, logits = out[..., :3], out[..., 3].astype(np.int64), out[..., 4:]
    if logits.shape[-1] != args.classes or not np.array_equal(logits.argmax(-1), ids):
        raise SystemExit("the logits captured are not the ones the seed's argmax read")
    table = np.asarray(_colour_table(tools, args.classes), np.float32)
    if np.abs(colours - table[ids]).max() > 0.5:  # the colour image is what the seed would save
        raise SystemExit("the seed's colour image and its class ids disagree")
    raw = saved.get("b.png")  # the fork's own dump of the raw argmax (x256): a second witness
    if raw is not None and not np.array_equal(np.asarray(raw)[: ids.shape[0], : ids.shape[1]], ids * 256):
        raise SystemExit("the fork's raw argmax dump disagrees with its prediction")
    np.save(args.out, ids.astype(np.uint8))
    np.save(args.out.replace(".npy", ".logits.npy"), logits.astype(np.float32))
    print(args.out, np.bincount(ids.ravel(), minlength=args.classes).tolist()[:20])


def _colour_table(tools: types.ModuleType, classes: int) -> list:
    """The colours decode_labels multiplies the one-hot map with, as the seed chooses them."""
    if hasattr(tools, "label_colors"):  # the KITTI fork
        table = list(tools.label_colors)
    elif classes == 150:
        table = tools.read_labelcolours(tools.matfn)
    else:
        table = list(tools.label_colours)
    return table[:classes]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("seed_dir")
    s.add_argument("out_dir")
    s.add_argument("--net", choices=("PSPNet50", "PSPNet101"), required=True)
    s.add_argument("--classes", type=int, required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--optimizer", choices=("momentum", "adam"), default="momentum")
    s.add_argument("--step", type=int, default=0)
    s.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("infer")
    i.add_argument("seed_dir")
    i.add_argument("ckpt_dir")
    i.add_argument("image")
    i.add_argument("out")
    i.add_argument("--dataset", required=True)
    i.add_argument("--classes", type=int, required=True)
    i.add_argument("--flipped-eval", action="store_true")
    args = p.parse_args()
    {"save": save, "infer": infer}[args.cmd](args)


if __name__ == "__main__":
    main()
