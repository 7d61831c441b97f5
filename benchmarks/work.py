"""Multiply-accumulates per frame: the work a latency figure pays for.

Latency alone hides whether a backend is slow or the model is big. Dividing the work by the
time gives the rate the hardware sustained, which can be set against the CPU's peak: a target
that needs more than the peak rate cannot be met by any software on that machine.
"""

from __future__ import annotations

from functools import cache


@cache
def gmac_per_frame(model: str, height: int, width: int) -> float:
    """Convolution and matmul multiply-accumulates (x1e9) of one forward pass, counted on the
    meta device (no memory, no compute) with torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pspnet.build import create_model
    from pspnet.zoo import get_spec

    with torch.device("meta"):
        net = create_model(get_spec(model)).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            net(torch.empty(1, 3, height, width))
    return counter.get_total_flops() / 2e9


def gmac_per_second(gmac: float, ms_per_frame: float | None) -> float | None:
    """The sustained rate: work per frame over the time per frame."""
    if not ms_per_frame:
        return None
    return gmac / (ms_per_frame / 1000.0)
