"""pspnet-rt: stream frames from any source through any artefact on any backend.

Imports nothing heavy (and never torch): an edge box carries numpy, OpenCV and one
inference runtime. Submodules load their backend lazily.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
