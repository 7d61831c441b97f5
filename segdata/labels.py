"""Class lists, palettes and label conversions of the data sets PSPNet was released for."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# cityscapesScripts labelId -> trainId; KITTI semantics uses the same labelIds.
CITYSCAPES_LABELID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
    "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
    "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
    "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
    "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)


def voc_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC bit-interleaving colour map; distinct colours for any class count."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return tuple(out)


VOC_PALETTE = voc_palette(len(VOC_CLASSES))
ADE20K_PALETTE = voc_palette(len(ADE20K_CLASSES) + 1)[1:]  # skip black, which reads as 'none'

# KITTI road (data_road): ground truth is colour-coded, magenta road, red not road, black
# outside the annotated area. Two label sets read it (registered in segdata.label_sets, the one
# loader, which says why there are two): "kitti-road", the KITTI fork's three trained classes
# (black, red, magenta -> 0, 1, 2), and "kitti-road-binary", the benchmark's view (black ignored,
# as the KITTI devkit does: valid = red channel > 0). The palettes are the ground truth's own
# colours, so a colourised prediction reads like a gt_image_2 file.
KITTI_ROAD_BLACK, KITTI_ROAD_RED, KITTI_ROAD_MAGENTA = (0, 0, 0), (255, 0, 0), (255, 0, 255)  # RGB
KITTI_ROAD_CLASSES: tuple[str, ...] = ("void", "not road", "road")
KITTI_ROAD_PALETTE = (KITTI_ROAD_BLACK, KITTI_ROAD_RED, KITTI_ROAD_MAGENTA)
KITTI_ROAD_BINARY_CLASSES: tuple[str, ...] = ("not road", "road")
KITTI_ROAD_BINARY_PALETTE = (KITTI_ROAD_RED, KITTI_ROAD_MAGENTA)
# ground-truth colour (RGB) -> training id, per label set
KITTI_ROAD_COLOR_IDS: dict[str, dict[tuple[int, int, int], int]] = {
    "kitti-road": {KITTI_ROAD_BLACK: 0, KITTI_ROAD_RED: 1, KITTI_ROAD_MAGENTA: 2},
    "kitti-road-binary": {KITTI_ROAD_BLACK: IGNORE_INDEX, KITTI_ROAD_RED: 0, KITTI_ROAD_MAGENTA: 1},
}


def lookup_table(mapping: dict[int, int], default: int = IGNORE_INDEX) -> np.ndarray:
    """A 256-entry uint8 LUT so a whole label image converts with one indexing op."""
    lut = np.full(256, default, np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


CITYSCAPES_LABELID_LUT = lookup_table(CITYSCAPES_LABELID_TO_TRAINID)


def cityscapes_labelids_to_trainids(label: np.ndarray) -> np.ndarray:
    return CITYSCAPES_LABELID_LUT[label]


def ade20k_to_train(label: np.ndarray) -> np.ndarray:
    """ADE20K stores 0 for 'other' and 1..150 for classes; train ids are id-1 with 0 -> 255."""
    return (label.astype(np.int16) - 1).astype(np.uint8)  # 0 wraps to 255


def colorize(labels: np.ndarray, palette: np.ndarray, ignore_color: tuple[int, int, int] = (0, 0, 0)
             ) -> np.ndarray:
    """Class map -> BGR image through a 256-entry LUT (ids beyond the palette get ignore_color)."""
    return palette_lut_bgr(palette, ignore_color)[labels]


def palette_lut_bgr(palette: np.ndarray | tuple, ignore_color: tuple[int, int, int] = (0, 0, 0)
                    ) -> np.ndarray:
    lut = np.tile(np.array(ignore_color[::-1], np.uint8), (256, 1))
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)
    lut[: len(pal)] = pal[:, ::-1]
    return lut


def kitti_road_colors_to_ids(bgr: np.ndarray, label_set: str) -> tuple[np.ndarray, dict]:
    """A data_road gt_image_2 image (as cv2 reads it, BGR) -> training ids of `label_set`.

    Returns the ids and a summary of pixels whose colour is none of black, red, magenta
    ({"pixels": n, "colours": [(r, g, b), ...]}; empty when every pixel is one of them): the
    caller refuses such a file rather than guess what the colour meant.
    """
    table = KITTI_ROAD_COLOR_IDS[label_set]
    b = bgr[:, :, 0].astype(np.int32)
    g = bgr[:, :, 1].astype(np.int32)
    r = bgr[:, :, 2].astype(np.int32)
    code = (r << 16) | (g << 8) | b
    out = np.full(code.shape, IGNORE_INDEX, np.uint8)
    known = np.zeros(code.shape, bool)
    for (cr, cg, cb), train_id in table.items():
        hit = code == ((cr << 16) | (cg << 8) | cb)
        out[hit] = train_id
        known |= hit
    if known.all():
        return out, {}
    strange = np.unique(code[~known])
    colours = [(int(c >> 16), int((c >> 8) & 255), int(c & 255)) for c in strange[:3]]
    return out, {"pixels": int((~known).sum()), "colours": colours, "kinds": int(strange.size)}
