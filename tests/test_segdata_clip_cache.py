"""The cached demo clip equals the live render and is reused, not re-rendered."""

from __future__ import annotations

import numpy as np

from segdata.clip_cache import CachedClip
from segdata.synthetic import StreetClip


def test_cached_clip_equals_live_render_and_is_reused(tmp_path):
    cached = CachedClip(3, 48, 96, 4, folder=tmp_path, progress=False)
    live = StreetClip(3, 48, 96, 4)
    for i in range(4):
        assert np.array_equal(cached[i][0], live[i][0]) and np.array_equal(cached[i][1], live[i][1])
    stamp = cached.image_path.stat().st_mtime_ns
    again = CachedClip(3, 48, 96, 4, folder=tmp_path, progress=False)
    assert again.image_path.stat().st_mtime_ns == stamp and len(again) == 4
    assert not list(tmp_path.glob("*.tmp"))
