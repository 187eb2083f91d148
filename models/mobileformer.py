"""Mobile-Former (Chen et al., "Mobile-Former: Bridging MobileNet and Transformer", CVPR 2022, arXiv 2108.05895).

Our own implementation, written from ../shared/MODELS.md section 1 (a line-by-line description of the authors'
released code). It reproduces the authors' model exactly: the same parameter count, the same state-dict names and
shapes (so the released checkpoints load with strict key matching) and the same order of operations, so logits
agree with the authors' implementation. Details that the paper does not state but the code does (and that we follow):

* Former: 4 heads, queries projected, keys = values = the tokens themselves, post-LayerNorm, FFN expansion 2 (GELU).
* Mobile->Former: 2 heads over channel halves, keys = values = the raw feature map, a dynamic channel gate
  ``2 * h_sigmoid(Linear(z))`` on the attention output, post-LayerNorm. An extra one runs on the last feature map.
* Mobile<-Former: 2 heads, queries = the raw feature map, residual add, no output projection or norm.
* Dynamic ReLU: slopes only, two pieces, coefficients from the first token *after* the block's Former, one hyper
  network (d -> d/4 -> 2C) per activation.
* 26m = the 52m channel plan with grouped (x4) 1x1 convolutions and ShuffleNet channel shuffles.

The variants are rows of one table (`VARIANTS`, in mobileformer_cfg.py); the blocks are shared. Ablation
switches (the paper's ablation tables) are constructor arguments: ``tokens`` (number of global tokens),
``dyrelu`` (dynamic ReLU or plain ReLU) and ``bridge`` (False = the Mobile-only network: no tokens, Former or
bridges, plain ReLU, a head on pooled features only). One what-if that is not in the paper: ``dyrelu_token="input"``
takes each block's dynamic-ReLU coefficients from the first token *entering* the block instead of the one after its
Former, so the Mobile sub-block no longer waits for Mobile->Former and the Former (same parameters and MAdds, a
different, untrained model: its accuracy is unknown).

Internally the tokens are laid out batch-first (B x M x d); the authors use M x B x d. The arithmetic is the same.
Every tensor stays at rank <= 4 except the channel shuffle (rank 5, 26m only), which keeps converters happy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ToolkitError
from models.mobileformer_cfg import DYRELU_TOKENS, VARIANTS, Block, MobileFormerCfg

__all__ = ["Block", "MobileFormerCfg", "VARIANTS", "MobileFormer"]


# --------------------------------------------------------------------------------------------- small layers
class HSigmoid(nn.Module):
    """h_sigmoid(x) = ReLU6(x + 3) / 6, written as the authors write it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class HSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (F.relu6(x + 3.0) / 6.0)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: (B, g, C/g, H, W) -> swap 1 and 2 -> (B, C, H, W)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(b, c, h, w)


def _shuffle(groups: int, enabled: bool) -> list[nn.Module]:
    return [ChannelShuffle(groups)] if enabled else []


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, extra: list | None = None):
    layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, *(extra or []))


class HyperFunc(nn.Module):
    """The hyper network of one dynamic ReLU: token -> (a1, a2) slopes for `channels` channels."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.hyper = nn.Sequential(nn.Linear(dim, dim // 4), nn.ReLU(inplace=True),
                                   nn.Linear(dim // 4, 2 * channels), HSigmoid())

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        return self.hyper(token)


def dynamic_relu(x: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
    """max(x * a1, x * a2), a1 = (h1 - 0.5) * 2 + 1, a2 = (h2 - 0.5) * 2, per channel (k = 2, slopes only)."""
    c = x.shape[1]
    a1 = (coefs[:, :c] - 0.5) * 2.0 + 1.0
    a2 = (coefs[:, c:] - 0.5) * 2.0
    return torch.maximum(x * a1[:, :, None, None], x * a2[:, :, None, None])


# --------------------------------------------------------------------------------------------- bridge and Former
class Local2Global(nn.Module):
    """Mobile->Former: tokens attend to the feature map (2 heads over channel halves), gated, post-LN."""

    def __init__(self, channels: int, dim: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.scale = (channels // heads) ** -0.5
        self.alpha = nn.Sequential(nn.Linear(dim, channels), HSigmoid())
        self.q = nn.Linear(dim, channels)
        self.proj = nn.Linear(channels, dim)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        m, n = z.shape[1], self.heads
        q = self.q(z).reshape(b, m, n, c // n).transpose(1, 2)  # B, n, M, c/n
        k = x.reshape(b, n, c // n, h * w)  # B, n, c/n, HW (keys = values = the feature map)
        attn = torch.softmax((q @ k) * self.scale, dim=-1)  # over HW
        out = (attn @ k.transpose(2, 3)).transpose(1, 2).reshape(b, m, c)
        out = out * (2.0 * self.alpha(z))
        return self.layer_norm(z + self.proj(out))


class GlobalBlock(nn.Module):
    """Former: self-attention among the tokens (queries projected, K = V = tokens), then FFN; post-LN."""

    def __init__(self, dim: int, heads: int = 4, ffn_expansion: int = 2):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.ffn = nn.Sequential(nn.Linear(dim, dim * ffn_expansion), nn.GELU(), nn.Linear(dim * ffn_expansion, dim))
        self.ffn_norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.channel_mlp = nn.Linear(dim, dim)
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, m, d = z.shape
        n = self.heads
        q = self.q(z).reshape(b, m, n, d // n).transpose(1, 2)
        kv = z.reshape(b, m, n, d // n).transpose(1, 2)
        attn = torch.softmax((q @ kv.transpose(2, 3)) * self.scale, dim=-1)
        out = (attn @ kv).transpose(1, 2).reshape(b, m, d)
        z = self.layer_norm(z + self.channel_mlp(out))
        return self.ffn_norm(z + self.ffn(z))


class Global2Local(nn.Module):
    """Mobile<-Former: each pixel attends to the tokens (2 heads over channel halves), added residually."""

    def __init__(self, channels: int, dim: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.scale = (channels // heads) ** -0.5
        self.k = nn.Linear(dim, channels)
        self.proj = nn.Linear(dim, channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        m, n = z.shape[1], self.heads
        q = x.reshape(b, n, c // n, h * w).transpose(2, 3)  # B, n, HW, c/n
        k = self.k(z).reshape(b, m, n, c // n).transpose(1, 2)  # B, n, M, c/n
        v = self.proj(z).reshape(b, m, n, c // n).transpose(1, 2)
        attn = torch.softmax((q @ k.transpose(2, 3)) * self.scale, dim=-1)  # over M
        out = (attn @ v).transpose(2, 3).reshape(b, c, h, w)
        return x + out


# --------------------------------------------------------------------------------------------- blocks
class LiteBlock(nn.Module):
    """Stage-1 lite bottleneck: dw conv with channel multiplier -> BN -> ReLU6 -> [shuffle] -> pw -> BN."""

    def __init__(self, c_in: int, blk: Block, groups: int):
        super().__init__()
        hidden = c_in * blk.e1
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, hidden, 3, blk.stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True), ChannelShuffle(c_in) if groups > 1 else nn.Identity(),
            nn.Conv2d(hidden, blk.c_out, 1, 1, 0, groups=groups, bias=False), nn.BatchNorm2d(blk.c_out))
        self.residual = blk.stride == 1 and c_in == blk.c_out

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.conv(x)
        return (x + out if self.residual else out), z


class MobileFormerBlock(nn.Module):
    """A Mobile-Former block: Mobile->Former, Former, Mobile (dynamic ReLU from token 0), Mobile<-Former.

    ``down`` blocks are dw(s2)-pw-dw-pw with an inner residual; ``mf`` blocks are pw-dw-pw. Without ``bridge`` the
    block is the Mobile sub-block alone; without ``dyrelu`` its activations are plain ReLUs.
    """

    def __init__(self, c_in: int, blk: Block, dim: int, groups: int, *, dyrelu: bool, bridge: bool,
                 dyrelu_token: str = "after"):
        super().__init__()
        self.token_from_input = dyrelu_token == "input"
        self.down = blk.kind == "down"
        c_out, g = blk.c_out, groups
        self.dyrelu = dyrelu and bridge
        self.bridge = bridge
        if self.down:
            h1, h2 = c_in * blk.e1, c_out * blk.e2
            self.conv1 = _conv_bn(c_in, h1, 3, blk.stride, groups=c_in, extra=_shuffle(c_in, g > 1))
            self._hyper(1, dim, h1)
            self.conv2 = _conv_bn(h1, c_out, 1, groups=g)
            self.conv3 = _conv_bn(c_out, h2, 3, 1, groups=c_out, extra=_shuffle(c_out, g > 1))
            self._hyper(3, dim, h2)
            self.conv4 = _conv_bn(h2, c_out, 1, groups=g)
            self.residual = False  # stride 2: the identity residual never fires
        else:
            hid = c_in * blk.e1
            self.conv1 = _conv_bn(c_in, hid, 1, groups=g, extra=_shuffle(g, g > 1))
            self._hyper(1, dim, hid)
            self.conv2 = _conv_bn(hid, hid, 3, blk.stride, groups=hid)
            self._hyper(2, dim, hid)
            self.conv3 = _conv_bn(hid, c_out, 1, groups=g, extra=_shuffle(g, g > 1))
            self.residual = blk.stride == 1 and c_in == c_out
        if bridge:
            self.local_global = Local2Global(c_in, dim)
            self.global_block = GlobalBlock(dim)
            self.global_local = Global2Local(c_out, dim)

    def _hyper(self, idx: int, dim: int, channels: int) -> None:
        setattr(self, f"hyper{idx}", HyperFunc(dim, channels) if self.dyrelu else None)

    def _act(self, x: torch.Tensor, hyper: HyperFunc | None, token: torch.Tensor | None) -> torch.Tensor:
        return dynamic_relu(x, hyper(token)) if hyper is not None else F.relu(x)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        token = None
        if self.bridge:
            z_in = z
            z = self.global_block(self.local_global(x, z))
            token = (z_in if self.token_from_input else z)[:, 0]  # the authors': after this block's Former
        if self.down:
            out = self._act(self.conv1(x), self.hyper1, token)
            skip = self.conv2(out)
            out = self._act(self.conv3(skip), self.hyper3, token)
            out = self.conv4(out) + skip
        else:
            out = self._act(self.conv1(x), self.hyper1, token)
            out = self._act(self.conv2(out), self.hyper2, token)
            out = self.conv3(out)
            if self.residual:
                out = out + x
        if self.bridge:
            out = self.global_local(out, z)
        return out, z


class MergeClassifier(nn.Module):
    """Head: [shuffle] conv1x1 (x6) BN ReLU6 -> GAP -> h-swish -> concat token 0 -> FC BN1d h-swish -> FC."""

    def __init__(self, c_in: int, dim: int, hidden: int, groups: int, dropout: float, num_classes: int):
        super().__init__()
        c_head = c_in * 6
        self.conv = nn.Sequential(ChannelShuffle(groups) if groups > 1 else nn.Identity(),
                                  nn.Conv2d(c_in, c_head, 1, 1, 0, groups=groups, bias=False),
                                  nn.BatchNorm2d(c_head), nn.ReLU6(inplace=True))
        self.fc = nn.Sequential(nn.Linear(c_head + dim, hidden), nn.BatchNorm1d(hidden), HSwish())
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.act = HSwish()

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        x = self.act(self.conv(x).mean((2, 3)))
        if z is not None:
            x = torch.cat([x, z[:, 0]], dim=1)
        return self.classifier(self.fc(x))


# --------------------------------------------------------------------------------------------- the network
class MobileFormer(nn.Module):
    def __init__(self, cfg: MobileFormerCfg, *, tokens: int | None = None, dyrelu: bool = True,
                 bridge: bool = True, dyrelu_token: str = "after", num_classes: int = 1000):
        super().__init__()
        if dyrelu_token not in DYRELU_TOKENS:
            raise ToolkitError(f"dyrelu_token takes {' or '.join(DYRELU_TOKENS)}, not {dyrelu_token!r}")
        if dyrelu_token != "after" and not (dyrelu and bridge):
            raise ToolkitError("dyrelu_token=input needs dynamic ReLU and the bridges (dyrelu=true, bridge=true)")
        self.cfg = cfg
        self.bridge = bridge
        dim, g = cfg.dim, cfg.groups
        num_tokens = cfg.tokens if tokens is None else int(tokens)
        self.tokens = nn.Embedding(num_tokens, dim) if bridge else None
        self.stem = nn.Sequential(nn.Conv2d(3, cfg.stem, 3, 2, 1, bias=False), nn.BatchNorm2d(cfg.stem),
                                  nn.ReLU6(inplace=True))
        blocks, c = [], cfg.stem
        for blk in cfg.blocks:
            if blk.kind == "lite":
                blocks.append(LiteBlock(c, blk, g))
            else:
                blocks.append(MobileFormerBlock(c, blk, dim, g, dyrelu=dyrelu, bridge=bridge,
                                                dyrelu_token=dyrelu_token))
            c = blk.c_out
        self.features = nn.ModuleList(blocks)
        self.local_global = Local2Global(c, dim) if bridge else None
        self.classifier = MergeClassifier(c, dim if bridge else 0, cfg.head_hidden, g, cfg.dropout, num_classes)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = None
        if self.tokens is not None:
            w = self.tokens.weight
            if not torch.is_grad_enabled() and not torch.compiler.is_compiling():
                # Eager inference: a view of the parameter made under no_grad requires grad yet has no grad_fn,
                # which breaks tools that hook module inputs (FlopCounterMode, fvcore, torchinfo). detach() gives
                # the same values; when tracing (torch.export, every exporter) the graph is left exactly as it was.
                w = w.detach()
            z = w.unsqueeze(0).expand(x.shape[0], -1, -1)
        x = self.stem(x)
        for blk in self.features:
            x, z = blk(x, z)
        if self.local_global is not None:
            z = self.local_global(x, z)
        return self.classifier(x, z)

