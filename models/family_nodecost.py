"""The per-node cost probe: not a model to compare but the instrument that measures what one graph node costs a
runtime on a device, apart from the work it does.

Two "models", a chain of N trivial nodes and one of 2N, each node an element-wise Add or Mul of 8 floats (two
inputs, like most of a vision model's small nodes; both operands come from the input, so no converter can fold
them away), exported and timed like any model in the same rounds as the models (bench why adds them with the peak
probe; `bench run --probes` too). Per runtime, (latency(2N) - latency(N)) / (nodes(2N) - nodes(N)), with the node
counts read from each artifact's own graph, is the cost of one more node (bench/nodecost.py); beside a model's
fixed cost the report sets its node count times that cost. Like the profiler floor (bench/profile.py) it is
measured on the device that runs the models, through the same runtime, not assumed. Role "probe": never in a
ratio, a pair or the default sweep.
"""

from __future__ import annotations

from functools import partial

from models.spec import IMAGENET_MEAN, IMAGENET_STD, FamilySpec, ModelSpec

FAMILY = FamilySpec(name="nodechain", display="per-node cost probe", role="probe", measures="per_node",
                    paper="(instrument) chains of N and 2N trivial element-wise nodes",
                    components={"NodeChain": "chain"})

WIDTH = 8  # floats per node
# name -> nodes in the chain (N and 2N)
VARIANTS: dict[str, int] = {"nodechain_250": 250, "nodechain_500": 500}


def _build(nodes: int):
    import torch
    from torch import nn

    class NodeChain(nn.Module):
        """x -> a = 8 input values, b = 1 + a / 1000 -> `nodes` alternating t + a, t * b -> 1000 logits (the 8
        values plus 125 offsets, a broadcast Add and two Reshapes: the same few nodes in both chains)."""

        def __init__(self):
            super().__init__()
            self.nodes = nodes
            self.register_buffer("offsets", torch.arange(1000 // WIDTH, dtype=torch.float32).view(1, 1, -1) * 0.01)

        def forward(self, x):
            a = x[:, :1, :1, :WIDTH].reshape(x.shape[0], WIDTH)
            b = a * 0.001 + 1.0
            t = a
            for i in range(self.nodes):
                t = t + a if i % 2 == 0 else t * b
            return (t.reshape(x.shape[0], WIDTH, 1) + self.offsets).reshape(x.shape[0], 1000)

    return NodeChain()


def specs() -> list[ModelSpec]:
    return [ModelSpec(name=name, family=FAMILY.name, build=partial(_build, n), default_resolution=(32, 32),
                      min_resolution=WIDTH, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                      source="models/family_nodecost.py (a measuring instrument, no paper)")
            for name, n in VARIANTS.items()]
