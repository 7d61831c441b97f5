"""ROS without a ROS install: bags in (rosbag2 MCAP/SQLite, ROS 1), bags out (MCAP), and a live
view in Foxglove. Everything here needs the `ros` extra (rosbags, mcap, mcap-ros2-support,
foxglove-sdk), imported lazily so the base runtime stays lean; `require()` turns a missing
package into one line that says how to install it. No ROS 2 graph (rclpy/DDS) is involved."""

from __future__ import annotations

import importlib

from runtime.errors import UsageError

ROS_EXTRA = "pip install 'pspnet-rt[ros]'"


def require(what: str, *modules: str) -> None:
    """UsageError (exit 2, one line) when a package of the ros extra is missing."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UsageError(f"{what} needs the ros extra ({exc.name or module} is not installed): "
                             f"{ROS_EXTRA}") from None
