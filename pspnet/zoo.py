"""Named PSPNet variants: one frozen spec each, in a registry (no giant if/else).

Torch-free on purpose: the runtime reads class lists, palettes and input conventions from
here when it has to build the default artefact, and an edge box carries no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from segdata.label_sets import LabelSet, get_label_set

IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_MODEL = "demo"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build, export and describe one variant."""

    name: str
    depth: int
    label_set: str  # a registered label set (segdata.label_sets), unless `labels` gives one
    input_size: tuple[int, int]  # H, W the artefact is exported at by default
    width: float = 1.0
    bins: tuple[int, ...] = (1, 2, 3, 6)
    mean: tuple[float, float, float] = IMAGENET_MEAN_255
    std: tuple[float, float, float] = IMAGENET_STD_255
    channel_order: str = "RGB"  # what the network was trained on; the fused graph converts BGR
    stride_on_1x1: bool = False  # Caffe-converted weights put conv3_1's stride on the 1x1
    caffe_ppm_order: bool = False  # Caffe-converted weights concat [x, pool6, pool3, pool2, pool1]
    # TensorFlow's 'SAME' padding on the stride-2 stem conv and pool1 (the TF seed): at even sizes
    # (720) it pads only after (0, 1), where the symmetric pad 1 would shift the grid by a pixel.
    tf_same_padding: bool = False
    labels: LabelSet | None = None  # a label set from a file (--classes FILE), overriding label_set
    weights: str | None = None  # shipped checkpoint, relative to pspnet/weights/
    # Frames of the model's own domain that INT8 may calibrate on without --calib-data (a source
    # for calib.sources.load_frames); None: `--precision auto` needs --calib-data to try INT8.
    calibration: str | None = None
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def label_set_info(self) -> LabelSet:
        return self.labels if self.labels is not None else get_label_set(self.label_set)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.label_set_info.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.label_set_info.palette

    @property
    def ignore_index(self) -> int:
        return self.label_set_info.ignore_index

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def weights_path(self) -> Path | None:
        return WEIGHTS_DIR / self.weights if self.weights else None

    @property
    def shipped_ranges_path(self) -> Path | None:
        """INT8 calibration ranges shipped beside the weights (see calib/ranges.py), if any."""
        return WEIGHTS_DIR / f"{Path(self.weights).stem}.ranges.json" if self.weights else None

    def with_size(self, height: int, width: int) -> ModelSpec:
        return replace(self, input_size=(height, width))

    def with_labels(self, labels: LabelSet) -> ModelSpec:
        return replace(self, label_set=labels.name, labels=labels)


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}") from None


def available() -> list[str]:
    return sorted(REGISTRY)


register(ModelSpec("pspnet50_ade20k", 50, "ade20k", (473, 473),
                   description="semseg PSPNet50, ADE20K 150 classes (41.89 mIoU published)"))
register(ModelSpec("pspnet101_ade20k", 101, "ade20k", (473, 473),
                   description="semseg PSPNet101, ADE20K 150 classes (43.10 mIoU published)"))
register(ModelSpec("pspnet50_voc2012", 50, "voc2012", (473, 473),
                   description="semseg PSPNet50, VOC2012 21 classes (77.05 mIoU published)"))
register(ModelSpec("pspnet101_voc2012", 101, "voc2012", (473, 473),
                   description="semseg PSPNet101, VOC2012 21 classes (79.07 mIoU published)"))
register(ModelSpec("pspnet50_cityscapes", 50, "cityscapes", (713, 713),
                   description="semseg PSPNet50, Cityscapes 19 classes (77.30 mIoU published)"))
register(ModelSpec("pspnet101_cityscapes", 101, "cityscapes", (713, 713),
                   description="semseg PSPNet101, Cityscapes 19 classes (78.63 mIoU published)"))
register(ModelSpec("pspnet18_cityscapes", 18, "cityscapes", (512, 1024),
                   description="edge PSPNet on a dilated ResNet-18, Cityscapes classes"))
register(ModelSpec(DEMO_MODEL, 18, "cityscapes", (240, 480), width=0.5,
                   weights="demo_synthetic.pth", calibration="synthetic:calib",
                   description="shipped edge PSPNet (ResNet-18 at half width) trained on the "
                               "synthetic street scenes, Cityscapes trainIds"))


# The 2017 Keras baseline (Vladkryvoruchko/PSPNet-Keras-tensorflow): weights converted from the author's
# Caffe models, loaded with pspnet.keras_import. They were trained on BGR input minus the Caffe
# mean (given here in BGR order) with no std, with conv3_1's stride on its 1x1 reduce and the PPM
# concatenated [x, pool6, pool3, pool2, pool1]; their fixed PPM pools only fit 473 or 713 inputs.
KERAS_MEAN_BGR = (103.939, 116.779, 123.68)
_KERAS = dict(mean=KERAS_MEAN_BGR, std=(1.0, 1.0, 1.0), channel_order="BGR", stride_on_1x1=True,
              caffe_ppm_order=True)
register(ModelSpec("pspnet50_ade20k_keras", 50, "ade20k", (473, 473), **_KERAS,
                   description="Keras baseline pspnet50_ade20k.h5 (Caffe-converted), ADE20K 150 classes"))
register(ModelSpec("pspnet101_cityscapes_keras", 101, "cityscapes", (713, 713), **_KERAS,
                   description="Keras baseline pspnet101_cityscapes.h5 (Caffe-converted), Cityscapes 19 "
                               "classes"))
register(ModelSpec("pspnet101_voc2012_keras", 101, "voc2012", (473, 473), **_KERAS,
                   description="Keras baseline pspnet101_voc2012.h5 (Caffe-converted), VOC2012 21 classes"))


# The TensorFlow seed (hellochick/PSPNet-tensorflow): the same Caffe-converted weights as the Keras
# seed, saved as tf.train.Saver checkpoints and loaded with pspnet.tf_import. Same conventions
# (its IMG_MEAN is the Caffe mean in BGR), plus TensorFlow's 'SAME' padding, and its own crop sizes:
# 473 for ADE20K, 720 (not 713) for Cityscapes. The KITTI-road fork (watsoncm/PSPNet-tensorflow)
# fine-tuned PSPNet101 to 3 classes with its own mean (tools.py IMG_MEAN, BGR).
_TF = dict(_KERAS, tf_same_padding=True)
KITTI_FORK_MEAN_BGR = (89.592376709, 96.4095153809, 93.5726928711)
register(ModelSpec("pspnet50_ade20k_tf", 50, "ade20k", (473, 473), **_TF,
                   description="TF seed PSPNet50 ADE20K checkpoint (model.ckpt-N), 150 classes"))
register(ModelSpec("pspnet101_cityscapes_tf", 101, "cityscapes", (720, 720), **_TF,
                   description="TF seed PSPNet101 Cityscapes checkpoint (model.ckpt-N), 19 classes, "
                               "crop 720"))
register(ModelSpec("pspnet101_kitti_road_tf", 101, "kitti-road", (720, 720),
                   **{**_TF, "mean": KITTI_FORK_MEAN_BGR},
                   description="TF seed's KITTI-road fork: PSPNet101, 3 classes (void, not road, road), its "
                               "own BGR mean"))
