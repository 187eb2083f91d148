"""The Ray cluster as the devices layer sees it: joining it, and which node offers which device.

A node holds a device when it was started with the custom resource `device:<name>` (docs/cluster.md):
`ray start --address HEAD:6379 --resources '{"device:pixel8": 1}'`. `python -m devices list --executor ray` shows
them; bench/sweep/executors/ray.py binds a device's timing to that resource. Ray is imported only when this is called.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from devices.subproc import one_line
from models.errors import ToolkitError

NAMESPACE = "mobile-deploy-toolkit"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ToolkitError("--executor ray needs the ray package (pinned in requirements.lock): run `make setup`") \
            from None
    return ray


def connect(address: str | None) -> Any:
    """Join the cluster at `address` (None: RAY_ADDRESS, else the cluster started on this machine); one line if it
    cannot be reached or runs another Ray version."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    where = address or "auto"
    if address:
        _probe(address)
    try:
        ray.init(address=where, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, a version mismatch (RuntimeError), a bad address
        raise ToolkitError(f"cannot join the Ray cluster at {where}: {one_line(exc)} (start one with "
                           "`ray start --head`, see docs/cluster.md)") from None
    return ray


def _probe(address: str) -> None:
    """A cluster address that nothing listens on is said at once (ray.init would retry it for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ToolkitError(f"--ray-address {address!r} is not HOST:PORT (the head's GCS port, e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ToolkitError(f"cannot join the Ray cluster at {address}: nothing answers there ({exc.strerror or exc}); "
                           "start one with `ray start --head`, see docs/cluster.md") from None


def resource(device: str) -> str:
    return f"device:{device}"


def offered(ray: Any) -> dict[str, list[str]]:
    """Device name -> the ids of the live nodes that offer it (their `device:<name>` resource)."""
    out: dict[str, list[str]] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        for key in node.get("Resources", {}):
            if key.startswith("device:"):
                out.setdefault(key.removeprefix("device:"), []).append(node["NodeID"])
    return out


def nodes_table(address: str | None) -> list[list[str]]:
    """Rows of (device, node id, node address) for every device a live node offers."""
    ray = connect(address)
    try:
        where = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in ray.nodes()}
        return [[name, node, where.get(node, "?")] for name, ids in sorted(offered(ray).items()) for node in ids]
    finally:
        ray.shutdown()
