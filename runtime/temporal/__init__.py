"""Video-aware inference: key frames through the network, motion-warped results in between.

`TemporalBackend` (backend.py) wraps any backend with the same interface; `config.py` parses
`--temporal`; `scheduler.py` chooses key frames; `motion.py` estimates and applies motion.
Imports stay lazy here so `runtime.cli` can read the defaults without loading OpenCV.
"""
