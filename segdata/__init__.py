"""Torch-free data code shared by training, calibration, evaluation and the runtime.

Label sets and palettes, the synthetic street-scene generator, dataset loaders and the
segmentation metrics import with numpy and OpenCV only, so an edge box without torch can run
the `demo` source and the accuracy gate.
"""
