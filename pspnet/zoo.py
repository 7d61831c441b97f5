"""Named PSPNet variants: one frozen spec each, in a registry (no giant if/else).

Torch-free on purpose: the runtime reads class lists, palettes and input conventions from
here when it has to build the default artefact, and an edge box carries no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from segdata.labels import LABEL_SETS

IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEMO_MODEL = "demo"


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build, export and describe one variant."""

    name: str
    depth: int
    label_set: str  # key of segdata.labels.LABEL_SETS
    input_size: tuple[int, int]  # H, W the artefact is exported at by default
    width: float = 1.0
    bins: tuple[int, ...] = (1, 2, 3, 6)
    mean: tuple[float, float, float] = IMAGENET_MEAN_255
    std: tuple[float, float, float] = IMAGENET_STD_255
    channel_order: str = "RGB"  # what the network was trained on; the fused graph converts BGR
    stride_on_1x1: bool = False  # Caffe-converted weights put conv3_1's stride on the 1x1
    caffe_ppm_order: bool = False  # Caffe-converted weights concat [x, pool6, pool3, pool2, pool1]
    weights: str | None = None  # shipped checkpoint, relative to pspnet/weights/
    # Frames of the model's own domain that INT8 may calibrate on without --calib-data (a source
    # for calib.sources.load_frames); None: `--precision auto` needs --calib-data to try INT8.
    calibration: str | None = None
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def classes(self) -> tuple[str, ...]:
        return LABEL_SETS[self.label_set][0]

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return LABEL_SETS[self.label_set][1]

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
