"""Mobile-Former's export form: the same function as models/mobileformer.py with fewer, larger ops, for
`python -m export --optimize` only (the plain model, its state dict and its golden logits are untouched).

`export_form(model)` takes an eval-mode MobileFormer (any variant, any ablation override) and returns a module
built from copies of its weights. What it rewrites, and why each rewrite is exact (the same function; only the
float rounding order differs, by about 1e-7 of a logit):

* Tokens are kept as one (B*M, d) matrix instead of (B, M, d). Every token Linear is then one GEMM: onnxruntime
  wraps a Linear on a rank-3 input in two Reshapes (312 Reshape nodes in the optimized graph of the 294M at 128).
  The first token of each image (dynamic ReLU, the head) is the first d columns of the (B, M*d) view: a Reshape
  and a static Slice, which every runtime takes (a strided slice would leave XNNPACK).
* Convolution + BatchNorm are folded (in float64, then rounded) into one convolution with a bias. The exporters
  fold them too; doing it here gives every converter the same graph.
* Dynamic ReLU: the coefficient arithmetic (h_sigmoid, -0.5, *2, +1) is folded into the hyper network's last
  Linear: a1 = 2 h1 = clip((y1 + 3) / 3, 0, 2) and a2 = 2 h2 - 1 = clip((y2 + 3) / 3, 0, 2) - 1, so the
  weights are divided by 3 and 3 added to the bias. The two hyper networks of a block read the same token, so
  they run as one: their first layers stacked, their second layers block-diagonal, one Clip, one Sub of a constant
  vector, one Reshape to (B, channels, 1, 1) and Slices per coefficient. The full-resolution part stays
  max(x * a1, x * a2) (three element-wise ops; every exact rewrite found needs as many or more).
* Attention: the scale (head dim ** -0.5) is folded into the query (or key) weights; the Mobile->Former gate
  2 * h_sigmoid(Linear(z)) becomes hardsigmoid(Linear(z)) with the 2 folded into the output projection; the
  Mobile<-Former key and value projections of the same tokens are one GEMM; its output is computed as
  v^T @ attn^T, which lands in (B, heads, c/heads, H*W) and reshapes to the feature map with no transpose of the
  full-resolution tensor (the plain model transposes the feature map twice per block).
* h_swish / h_sigmoid of the head are torch's hardswish / hardsigmoid (one ONNX node each instead of four), the
  head's BatchNorm1d is folded into its Linear, and Dropout (a no-op at inference) is dropped.
* ONNX only: the Former's GELU is written x * (erf(x / sqrt 2) + 1) * 0.5, the order of onnxruntime's Gelu fusion
  pattern (the exporter's own order, 0.5 * (1 + erf) * x, is left as five nodes). XNNPACK and LiteRT take
  torch's gelu as one operator, so the other formats keep it.

Tests (tests/test_optimize.py): every variant and override set computes the plain model's logits within 1e-5 of
the largest logit; the exported artifacts are checked against PyTorch and against the plain artifacts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.mobileformer import LiteBlock, MobileFormer, MobileFormerBlock


# --------------------------------------------------------------------------------------------- folding helpers
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by bn (eval statistics) as one convolution with a bias, computed in float64 and stored in the
    conv's own dtype."""
    dtype = conv.weight.dtype
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    s = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True, dtype=dtype)
    with torch.no_grad():
        out.weight.copy_(w * s.view(-1, 1, 1, 1))
        out.bias.copy_((b - bn.running_mean.double()) * s + bn.bias.detach().double())
    return out


def _folded(seq: nn.Sequential) -> nn.Sequential:
    """A Sequential with every Conv2d -> BatchNorm2d pair folded (Identity dropped), other layers kept."""
    layers, mods = [], list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
            layers.append(fold_conv_bn(m, mods[i + 1]))
            i += 2
            continue
        if not isinstance(m, nn.Identity):
            layers.append(m)
        i += 1
    return nn.Sequential(*layers)


def _linear(weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype) -> nn.Linear:
    out = nn.Linear(weight.shape[1], weight.shape[0], dtype=dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


def _wb(lin: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    return lin.weight.detach().double(), lin.bias.detach().double()


def _first_token(z: torch.Tensor, batch: int, tokens: int) -> torch.Tensor:
    """Row 0 of every image's M token rows of a (B*M, d) matrix: the first d columns of its (B, M*d) view."""
    d = z.shape[1]
    return z.reshape(batch, tokens * d)[:, :d]


# --------------------------------------------------------------------------------------------- bridges and Former
class FastLocal2Global(nn.Module):
    """Mobile->Former on (B*M, d) tokens: scale folded into q, the gate as hardsigmoid with its 2 in the proj."""

    def __init__(self, m, tokens: int):
        super().__init__()
        self.heads, self.tokens = m.heads, tokens
        wq, bq = _wb(m.q)
        dt = m.q.weight.dtype
        self.q = _linear(wq * m.scale, bq * m.scale, dt)
        self.gate = _linear(*_wb(m.alpha[0]), dt)
        wp, bp = _wb(m.proj)
        self.proj = _linear(wp * 2.0, bp, dt)
        self.layer_norm = m.layer_norm

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, m = self.heads, self.tokens
        q = self.q(z).reshape(b, m, n, c // n).transpose(1, 2)  # B, n, M, c/n
        k = x.reshape(b, n, c // n, h * w)
        attn = torch.softmax(q @ k, dim=-1)
        out = (attn @ k.transpose(2, 3)).transpose(1, 2).reshape(b * m, c)
        return self.layer_norm(z + self.proj(out * F.hardsigmoid(self.gate(z))))


class ErfGelu(nn.Module):
    """The exact GELU in the operation order onnxruntime fuses into one Gelu node."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (torch.erf(x / 1.4142135623730951) + 1.0) * 0.5


class FastGlobalBlock(nn.Module):
    """The Former on (B*M, d) tokens, scale folded into q."""

    def __init__(self, m, tokens: int, fmt: str):
        super().__init__()
        self.heads, self.tokens = m.heads, tokens
        wq, bq = _wb(m.q)
        self.q = _linear(wq * m.scale, bq * m.scale, m.q.weight.dtype)
        self.channel_mlp, self.layer_norm = m.channel_mlp, m.layer_norm
        self.ffn = nn.Sequential(m.ffn[0], ErfGelu(), m.ffn[2]) if fmt == "onnx" else m.ffn
        self.ffn_norm = m.ffn_norm

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        bm, d = z.shape
        n, m = self.heads, self.tokens
        b = bm // m
        q = self.q(z).reshape(b, m, n, d // n).transpose(1, 2)
        kv = z.reshape(b, m, n, d // n).transpose(1, 2)
        attn = torch.softmax(q @ kv.transpose(2, 3), dim=-1)
        out = (attn @ kv).transpose(1, 2).reshape(bm, d)
        z = self.layer_norm(z + self.channel_mlp(out))
        return self.ffn_norm(z + self.ffn(z))


class FastGlobal2Local(nn.Module):
    """Mobile<-Former: k and v in one GEMM (scale folded into k), the output as v^T @ attn^T (no feature-map
    transpose on the way out)."""

    def __init__(self, m, tokens: int):
        super().__init__()
        self.heads, self.tokens = m.heads, tokens
        wk, bk = _wb(m.k)
        wv, bv = _wb(m.proj)
        self.kv = _linear(torch.cat([wk * m.scale, wv]), torch.cat([bk * m.scale, bv]), m.k.weight.dtype)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, m = self.heads, self.tokens
        q = x.reshape(b, n, c // n, h * w)  # B, n, c/n, HW
        kv = self.kv(z).reshape(b, m, 2 * n, c // n).transpose(1, 2)  # B, 2n, M, c/n
        k, v = kv[:, :n], kv[:, n:]
        attn = torch.softmax(q.transpose(2, 3) @ k.transpose(2, 3), dim=-1)  # B, n, HW, M
        out = v.transpose(2, 3) @ attn.transpose(2, 3)  # B, n, c/n, HW
        return x + out.reshape(b, c, h, w)


class FastHyper(nn.Module):
    """A block's hyper networks as one: stacked first layers, block-diagonal second layers with the coefficient
    arithmetic folded in; returns (a1, a2) per activation, each (B, C, 1, 1)."""

    def __init__(self, hypers: list, channels: list[int]):
        super().__init__()
        w1 = torch.cat([_wb(hf.hyper[0])[0] for hf in hypers])
        b1 = torch.cat([_wb(hf.hyper[0])[1] for hf in hypers])
        dt = hypers[0].hyper[0].weight.dtype
        self.first = _linear(w1, b1, dt)
        rows = sum(2 * c for c in channels)
        w2 = torch.zeros(rows, w1.shape[0], dtype=torch.float64)
        b2, off = [], []
        r = col = 0
        for hf, c in zip(hypers, channels):
            w, b = _wb(hf.hyper[2])
            w2[r:r + 2 * c, col:col + w.shape[1]] = w / 3.0
            b2.append((b + 3.0) / 3.0)
            off.append(torch.cat([torch.zeros(c), torch.ones(c)]))
            r, col = r + 2 * c, col + w.shape[1]
        self.second = _linear(w2, torch.cat(b2), dt)
        self.register_buffer("offset", torch.cat(off).to(dt))
        self.channels = list(channels)

    def forward(self, token: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        a = torch.clamp(self.second(F.relu(self.first(token))), 0.0, 2.0) - self.offset
        a = a.reshape(a.shape[0], -1, 1, 1)
        out, i = [], 0
        for c in self.channels:
            out.append((a[:, i:i + c], a[:, i + c:i + 2 * c]))
            i += 2 * c
        return out


def _act(x: torch.Tensor, coefs: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    if coefs is None:
        return F.relu(x)
    a1, a2 = coefs
    return torch.maximum(x * a1, x * a2)


# --------------------------------------------------------------------------------------------- blocks
class FastLiteBlock(nn.Module):
    def __init__(self, m: LiteBlock):
        super().__init__()
        self.conv = _folded(m.conv)
        self.residual = m.residual

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.conv(x)
        return (x + out if self.residual else out), z


class FastBlock(nn.Module):
    def __init__(self, m: MobileFormerBlock, tokens: int, fmt: str):
        super().__init__()
        self.down, self.bridge, self.residual = m.down, m.bridge, m.residual
        self.token_from_input, self.tokens = m.token_from_input, tokens
        self.conv1, self.conv2, self.conv3 = _folded(m.conv1), _folded(m.conv2), _folded(m.conv3)
        self.conv4 = _folded(m.conv4) if self.down else None
        names = ("hyper1", "hyper3") if self.down else ("hyper1", "hyper2")
        hypers = [getattr(m, k) for k in names]
        self.hyper = None
        if m.dyrelu and all(hf is not None for hf in hypers):
            convs = (m.conv1, m.conv3) if self.down else (m.conv1, m.conv2)
            self.hyper = FastHyper(hypers, [c[0].out_channels for c in convs])
        if self.bridge:
            self.local_global = FastLocal2Global(m.local_global, tokens)
            self.global_block = FastGlobalBlock(m.global_block, tokens, fmt)
            self.global_local = FastGlobal2Local(m.global_local, tokens)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        coefs: list = [None, None]
        if self.bridge:
            z_in = z
            z = self.global_block(self.local_global(x, z))
            if self.hyper is not None:
                coefs = self.hyper(_first_token(z_in if self.token_from_input else z, x.shape[0], self.tokens))
        if self.down:  # dw(s2) pw dw pw with the inner residual
            skip = self.conv2(_act(self.conv1(x), coefs[0]))
            out = self.conv4(_act(self.conv3(skip), coefs[1])) + skip
        else:  # pw dw pw
            out = self.conv3(_act(self.conv2(_act(self.conv1(x), coefs[0])), coefs[1]))
            out = out + x if self.residual else out
        return (self.global_local(out, z) if self.bridge else out), z


class FastHead(nn.Module):
    """conv (BN folded) ReLU6 -> GAP -> hardswish -> concat token 0 -> Linear (BN1d folded) -> hardswish -> Linear."""

    def __init__(self, m, tokens: int):
        super().__init__()
        self.conv = _folded(m.conv)
        lin, bn = m.fc[0], m.fc[1]
        w, b = _wb(lin)
        s = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        self.fc = _linear(w * s[:, None], (b - bn.running_mean.double()) * s + bn.bias.detach().double(),
                          lin.weight.dtype)
        self.classifier = m.classifier[1]
        self.tokens = tokens

    def forward(self, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        b = x.shape[0]
        x = F.hardswish(self.conv(x).mean((2, 3)))
        if z is not None:
            x = torch.cat([x, _first_token(z, b, self.tokens)], dim=1)
        return self.classifier(F.hardswish(self.fc(x)))


class FastMobileFormer(nn.Module):
    def __init__(self, m: MobileFormer, fmt: str = ""):
        super().__init__()
        self.num_tokens = m.tokens.weight.shape[0] if m.tokens is not None else 0
        if m.tokens is not None:
            self.register_buffer("token_init", m.tokens.weight.detach().clone())
        else:
            self.token_init = None
        self.stem = _folded(m.stem)
        self.features = nn.ModuleList([FastLiteBlock(b) if isinstance(b, LiteBlock) else
                                       FastBlock(b, self.num_tokens, fmt) for b in m.features])
        self.local_global = FastLocal2Global(m.local_global, self.num_tokens) if m.local_global is not None \
            else None
        self.classifier = FastHead(m.classifier, self.num_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.token_init  # (M, d) -> the (B*M, d) token matrix, image by image
        z = None if t is None else t.unsqueeze(0).expand(x.shape[0], -1, -1).reshape(-1, t.shape[1])
        x = self.stem(x)
        for blk in self.features:
            x, z = blk(x, z)
        return self.classifier(x, z if self.local_global is None else self.local_global(x, z))


def export_form(model: MobileFormer, fmt: str = "") -> nn.Module:
    """The export form of an eval-mode MobileFormer for format `fmt` (weights copied; the model is left as it
    was)."""
    if not isinstance(model, MobileFormer):
        raise TypeError(f"export_form takes a MobileFormer, not {type(model).__name__}")
    return FastMobileFormer(model, fmt).eval()


__all__ = ["export_form", "fold_conv_bn", "FastMobileFormer"]
