"""Face-recognition model: a compact IR-ResNet (or a dense MLP) backbone and an ArcFace margin head.

The backbone works on an 8x-downsampled grid: frequency input is the block-DCT channel
tensor ``[kept, H/8, W/8]``; pixel input is first rearranged ``pixel_unshuffle(8)`` into
``[64 P, H/8, W/8]`` (the same grid, the 8x8 block as channels), so both variants share one
architecture and differ only in the fixed linear map in front of it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

INPUT_KINDS = ("freq", "pixel")


class IRBlock(nn.Module):
    """Improved residual block (ArcFace IR): BN-conv-BN-PReLU-conv-BN + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        if stride == 1 and c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class PreparedInput(nn.Module):
    """What a backbone does to its input before its first layer: the pixel rearrangement, the
    input map (values or magnitudes), a fixed standardisation (``set_input_stats``: DCT channels
    differ in scale by orders of magnitude) and (``sample_norm``) each sample scaled to unit RMS.

    ``per_coefficient`` standardises every coefficient on its own (the MLP: so that a
    permutation of the coefficients permutes the statistics with them) instead of per channel.
    """

    def __init__(self, input_shape: tuple[int, int, int], input_kind: str, sample_norm: bool, input_map: str, per_coefficient: bool = False):
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind {input_kind!r} is not one of {INPUT_KINDS}")
        if input_map not in ("identity", "abs"):
            raise ValueError(f"input_map {input_map!r} is not identity or abs (auto is resolved before a network is built)")
        self.input_kind = input_kind
        self.sample_norm = sample_norm
        self.input_map = input_map
        c, h, w = input_shape  # of the 8x-downsampled input (pixels after pixel_unshuffle)
        stats_shape = (1, c, h, w) if per_coefficient else (1, c, 1, 1)
        self._stats_dims = (0,) if per_coefficient else (0, 2, 3)
        self.register_buffer("input_mean", torch.zeros(stats_shape))
        self.register_buffer("input_std", torch.ones(stats_shape))

    @torch.no_grad()
    def set_input_stats(self, x: torch.Tensor) -> None:
        """Fix the standardisation from sample inputs ``[N, C, h, w]`` (after the input map)."""
        x = self.prepare(x, standardise=False)
        self.input_mean.copy_(x.mean(dim=self._stats_dims, keepdim=True))
        self.input_std.copy_(x.std(dim=self._stats_dims, keepdim=True).clamp_min(1e-6))

    def prepare(self, x: torch.Tensor, standardise: bool = True) -> torch.Tensor:
        if self.input_kind == "pixel":
            x = F.pixel_unshuffle(x, 8)
        if self.input_map == "abs":
            x = x.abs()
        if standardise:
            x = (x - self.input_mean) / self.input_std
            if self.sample_norm:
                # Mixing k faces shrinks a sample's energy by about sum(w^2); rescaling every
                # sample to unit RMS keeps mixed training and unmixed inference inputs alike.
                x = x * x.pow(2).mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12).rsqrt()
        return x


class IRResNet(PreparedInput):
    """Embedding network. ``input_shape`` is ``(channels, h, w)`` of the (8x-downsampled) input,
    prepared per channel (``PreparedInput``)."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        widths: tuple[int, ...] = (64, 128, 256),
        depths: tuple[int, ...] = (1, 1, 1),
        embedding_dim: int = 256,
        dropout: float = 0.2,
        input_kind: str = "freq",
        sample_norm: bool = True,
        input_map: str = "identity",
    ):
        super().__init__(input_shape, input_kind, sample_norm, input_map)
        c, h, w = input_shape
        self.stem = nn.Sequential(nn.Conv2d(c, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
        layers: list[nn.Module] = []
        c_prev = widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            for j in range(depth):
                stride = 2 if (j == 0 and i > 0) else 1
                layers.append(IRBlock(c_prev, width, stride))
                if stride == 2:
                    h, w = math.ceil(h / 2), math.ceil(w / 2)
                c_prev = width
        self.body = nn.Sequential(*layers)
        self.output = nn.Sequential(
            nn.BatchNorm2d(c_prev),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(c_prev * h * w, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.body(self.stem(self.prepare(x))))


class MLPNet(PreparedInput):
    """Embedding network of dense layers over every coefficient, standardised one by one.

    It has no notion of block position or channel: AdamW, the per-coefficient standardisation
    and the dense first layer are all equivariant to a permutation of the input, so under the
    owner's ``scramble`` key it learns exactly as it would without it (a permuted first layer),
    which a convolution, built on neighbouring positions, cannot."""

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        widths: tuple[int, ...] = (512,),
        embedding_dim: int = 256,
        dropout: float = 0.2,
        input_kind: str = "freq",
        sample_norm: bool = True,
        input_map: str = "identity",
    ):
        super().__init__(input_shape, input_kind, sample_norm, input_map, per_coefficient=True)
        size = math.prod(self.input_mean.shape)
        layers: list[nn.Module] = [nn.Flatten()]
        for width in widths:
            layers += [nn.Dropout(dropout), nn.Linear(size, width), nn.BatchNorm1d(width), nn.PReLU(width)]
            size = width
        layers += [nn.Dropout(dropout), nn.Linear(size, embedding_dim), nn.BatchNorm1d(embedding_dim)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.prepare(x))


class ArcFaceHead(nn.Module):
    """Additive angular margin (ArcFace) classifier: ``s * cos(theta + m)`` on the true class."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.3):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale = scale
        self.margin = margin
        self._cos_m, self._sin_m = math.cos(margin), math.sin(margin)
        # Beyond theta = pi - m, cos(theta + m) is not monotonic: use the CosFace-like fallback.
        self._threshold = math.cos(math.pi - margin)
        self._fallback = math.sin(math.pi - margin) * margin

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """``[B, classes]`` cosines, float32 even under autocast: the margin moves a cosine near 1
        by less than bf16 resolves there (8 bits), and this product is small next to the backbone."""
        with torch.autocast(embedding.device.type, enabled=False):
            return F.linear(F.normalize(embedding.float()), F.normalize(self.weight.float()))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits without margin (inference)."""
        return self.scale * self.cosine(embedding)

    def margin_logits(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits with the angular margin applied to ``labels`` (training)."""
        target = cosine.gather(1, labels[:, None])
        sine = (1.0 - target.pow(2)).clamp_min(1e-7).sqrt()
        with_margin = target * self._cos_m - sine * self._sin_m
        with_margin = torch.where(target > self._threshold, with_margin, target - self._fallback)
        # scatter needs one dtype: a caller's cosine of lower precision (DP's logits under
        # autocast) must not meet a margin promoted to float32
        return self.scale * cosine.scatter(1, labels[:, None], with_margin.to(cosine.dtype))

    def mixed_loss(self, embedding: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Loss of mixed samples: ``mean_b sum_j w_bj * CE(margin_logits(y_bj), y_bj)``."""
        return self.mixed_row_losses(embedding, labels, weights).mean()

    def mixed_row_losses(self, embedding: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``[B]``: each row's ``sum_j w_bj * CE(margin_logits(y_bj), y_bj)`` (an aggregated step
        gives each message the mean over its own rows).

        A padding column (label -1, weight 0: ``protocol.concat_protected`` pads rows of smaller
        k so that messages of different k share one step) adds nothing, to the loss or the gradient.
        """
        cosine = self.cosine(embedding)
        weights = weights.to(cosine.dtype)  # the loss in the head's float32, whatever autocast gave the backbone
        loss = cosine.new_zeros(embedding.shape[0])
        for j in range(labels.shape[1]):
            real = labels[:, j] >= 0
            target = labels[:, j].clamp_min(0)
            term = weights[:, j] * F.cross_entropy(self.margin_logits(cosine, target), target, reduction="none")
            loss = loss + torch.where(real, term, torch.zeros_like(term))
        return loss


class FaceRecognizer(nn.Module):
    """Backbone + head; ``forward`` gives identity logits, ``embed`` the face embedding."""

    def __init__(self, backbone: IRResNet, head: ArcFaceHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
