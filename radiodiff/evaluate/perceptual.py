"""The evaluate stages' scores that need a network (the ``evaluate`` params section): LPIPS per
test image and the Inception features of FID and KID per method over the test split.

Both networks load from local files named in params, and the stages declare those files as
inputs: nothing downloads, and there is no environment-variable or hub-cache fallback (the
engines could not track it). LPIPS is the VAE loss's :class:`~radiodiff.models.losses.LPIPSLoss`
(a torchvision ImageNet backbone plus the ``lpips`` package's linear layers). FID and KID use
torch-fidelity's Inception-v3 (the TF1-compatible port of the original FID network), fed the
file ``evaluate.fid_weights``; the distances themselves are :func:`radiodiff.metrics.inception_distances`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from radiodiff.core.encodings import GRAY_MAX
from radiodiff.core.errors import ParamsError

LPIPS_MIN_SIDE = {"vgg": 16, "alex": 31}  # the smallest map each backbone's pooling takes
INCEPTION_FEATURES = "2048"  # the pool features FID and KID are defined on
INCEPTION_BATCH = 32  # maps through Inception at a time (each is resized to 299 × 299)
INCEPTION_KEYS = ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight", "fc.weight")  # a few of its tensors


def _local_file(key: str, path) -> Path:
    if path is None:
        raise ParamsError(f"{key}: not set; give a local file (nothing is downloaded)")
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise ParamsError(f"{key}: {p} not found (a local file; nothing is downloaded)")
    return p


class LPIPSScore:
    """LPIPS (Zhang et al. 2018) of each prediction against its truth, maps on [0, 1] taken to
    [−1, 1] and the gray channel replicated to RGB: (B,) float64. ``evaluate.lpips_net`` picks the
    backbone, ``evaluate.lpips_backbone_path`` is its torchvision checkpoint."""

    def __init__(self, net: str, backbone_path):
        from radiodiff.models.losses import LPIPSLoss

        self.net = net
        self.path = _local_file("evaluate.lpips_backbone_path (evaluate.lpips is true)", backbone_path)
        self.model = LPIPSLoss(net, self.path)

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if min(pred.shape[-2:]) < LPIPS_MIN_SIDE[self.net]:
            raise ParamsError(
                f"evaluate.lpips_net: LPIPS {self.net} needs maps of at least {LPIPS_MIN_SIDE[self.net]} px a side, "
                f"these are {pred.shape[-1]}x{pred.shape[-2]}"
            )
        d = self.model(pred.float() * 2 - 1, target.float() * 2 - 1)
        return d.view(len(pred)).double()

    def describe(self) -> str:
        return (
            f"LPIPS {self.net} (lpips 0.1 linear layers, torchvision backbone {self.path}), maps in [-1, 1] with the "
            "gray channel replicated to RGB, on the top-level scope's maps (ICASSP: padded pixels 0 in both)"
        )


class InceptionFeatures:
    """torch-fidelity's Inception-v3 pool features (B, 2048) of maps on [0, 1]: each map as 8-bit
    gray (round(255·x)) replicated to RGB, resized to 299 × 299 inside the network."""

    def __init__(self, weights_path):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.path = _local_file("evaluate.fid_weights", weights_path)
        self._check(self.path)
        try:
            self.model = FeatureExtractorInceptionV3(
                "inception-v3-compat", [INCEPTION_FEATURES], feature_extractor_weights_path=str(self.path)
            )
        except Exception as e:  # unreadable file, another network's weights
            raise ParamsError(
                f"evaluate.fid_weights: {self.path} is not torch-fidelity's Inception-v3 weights "
                f"(weights-inception-2015-12-05-6726825d.pth): {type(e).__name__}: {str(e)[:200]}"
            ) from None
        self.model.eval()

    @staticmethod
    def _check(path: Path) -> None:
        """Refuse a file that is not a state dict of this network before building it (seconds)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # not a checkpoint, or one holding more than tensors
            raise ParamsError(
                f"evaluate.fid_weights: {path} is unreadable as a checkpoint ({type(e).__name__})"
            ) from None
        if not isinstance(state, dict) or not all(k in state for k in INCEPTION_KEYS):
            raise ParamsError(
                f"evaluate.fid_weights: {path} is not torch-fidelity's Inception-v3 weights "
                "(weights-inception-2015-12-05-6726825d.pth)"
            )

    @torch.no_grad()
    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        gray = (maps.float().clamp(0, 1) * GRAY_MAX).round().to(torch.uint8)
        rgb = gray.expand(-1, 3, -1, -1) if gray.shape[1] == 1 else gray
        out = [self.model(rgb[i : i + INCEPTION_BATCH])[0] for i in range(0, len(rgb), INCEPTION_BATCH)]
        return torch.cat(out).float()

    def describe(self, n: int) -> str:
        return (
            f"torch-fidelity Inception-v3 ({self.path}), {INCEPTION_FEATURES}-d pool features; each map as 8-bit gray "
            "replicated to RGB, resized to 299 x 299 (TF1-compatible bilinear), on the top-level scope's maps; each "
            f"method's {n} test maps against the {n} ground truths. FID: Frechet distance of the two Gaussians "
            "(covariances ddof 1; biased at small n, so compare FIDs only at equal n); KID: unbiased MMD^2, cubic "
            "polynomial kernel (x.y/2048 + 1)^3, one subset of all n maps"
        )
