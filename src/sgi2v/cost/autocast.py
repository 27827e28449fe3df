"""What CUDA's autocast does to dtypes, for tensors that have no CUDA device (``meta`` ones).

The pipeline runs the optimisation passes of a half-precision UNet under ``torch.autocast`` (the latent
is optimised in float32). Autocast exists only for real devices, so to predict those passes' memory on
``meta`` tensors :class:`SimulatedAutocast` applies the same casting policy at the same level (above
autograd, so the casts are saved for backward as the real ones are). The policy is CUDA's, as listed in
ATen's ``autocast_mode.h`` (the lower-precision, float32 and promote lists) for the functions a
diffusers UNet, a CLIP encoder and our loss call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

__all__ = ["SimulatedAutocast"]

_LOWER = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, F.linear, F.prelu,
    F.scaled_dot_product_attention, torch.matmul, torch.mm, torch.bmm, torch.baddbmm, torch.addmm, torch.addbmm,
    torch.einsum, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.mm, torch.Tensor.bmm, torch.Tensor.baddbmm,
    torch.Tensor.addmm,
}
_FP32 = {
    F.group_norm, F.layer_norm, F.softmax, F.log_softmax, F.softplus, F.mse_loss, F.l1_loss, F.smooth_l1_loss,
    F.cosine_similarity, F.interpolate, torch.softmax, torch.log_softmax, torch.Tensor.softmax, torch.Tensor.log_softmax,
    torch.exp, torch.Tensor.exp, torch.log, torch.Tensor.log, torch.rsqrt, torch.Tensor.rsqrt, torch.pow, torch.Tensor.pow,
    torch.Tensor.__pow__, torch.reciprocal, torch.Tensor.reciprocal, torch.cumsum, torch.Tensor.cumsum, torch.sum,
    torch.Tensor.sum, torch.prod, torch.Tensor.prod, torch.logsumexp, torch.cdist, torch.dist, torch.expm1, torch.log1p,
    torch.log2, torch.log10, torch.acos, torch.asin, torch.cosh, torch.sinh, torch.tan, torch.erfinv,
}
_PROMOTE = {torch.cat, torch.stack, torch.addcmul, torch.addcdiv, torch.atan2, torch.cross, torch.dot, torch.tensordot}
if hasattr(F, "rms_norm"):
    _FP32.add(F.rms_norm)


def _eligible(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64


class SimulatedAutocast(TorchFunctionMode):
    """Within the block, the functions of CUDA autocast's lists cast their floating-point tensor
    arguments as autocast would: to ``dtype`` (convolutions, matrix products, attention), to float32
    (normalisations, softmax, interpolation, reductions, losses) or to the widest type among them
    (``cat``, ``stack``, ...). Everything else runs unchanged."""

    def __init__(self, dtype: torch.dtype = torch.float16):
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = None
        if func in _LOWER:
            target = self.dtype
        elif func in _FP32:
            target = torch.float32
        elif func in _PROMOTE:
            leaves = [t for t in tree_leaves((args, kwargs)) if _eligible(t)]
            if leaves and len({t.dtype for t in leaves}) > 1:
                target = torch.float32 if any(t.dtype == torch.float32 for t in leaves) else leaves[0].dtype
        if target is not None:
            args, kwargs = tree_map(lambda t: t.to(target) if _eligible(t) and t.dtype != target else t, (args, kwargs))
        return func(*args, **kwargs)
