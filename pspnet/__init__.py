"""PyTorch PSPNet: model, zoo, weight import and training.

Importing the package does not import torch: `pspnet.zoo` describes models (classes, input
size, normalisation) for the torch-free runtime; `pspnet.model`, `pspnet.weights` and
`pspnet.train` need the `export` extra.
"""
