"""Mixed precision: the network runs under autocast, everything around it (loss, EMA, optimizer) in float32."""
from __future__ import annotations

import torch
from torch import Tensor, nn

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class AutocastNet(nn.Module):
    """Runs `net` under autocast at `dtype` and hands back float32, so the loss is computed at full precision."""

    def __init__(self, net: nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.net, self.device_type, self.dtype = net, device_type, dtype

    def forward(self, *args, **kwargs) -> Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.net(*args, **kwargs)
        return out.float()


def with_precision(net: nn.Module, precision: str, device: torch.device) -> nn.Module:
    """`net` itself for fp32, else wrapped in autocast ('auto' resolved for this device)."""
    precision = resolve_precision(precision, device)
    return net if precision == "fp32" else AutocastNet(net, device.type, DTYPES[precision])


def native_bf16_cpu() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX-512 BF16 or AMX); without, oneDNN falls back to kernels
    about 100x slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto': bf16 where the device runs it natively (a CPU with AVX-512 BF16 / AMX, a GPU with bf16), else fp32."""
    if precision != "auto":
        return precision
    native = native_bf16_cpu() if device.type == "cpu" else device.type == "cuda" and torch.cuda.is_bf16_supported()
    return "bf16" if native else "fp32"


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision this device cannot run well, in one line."""
    from difflab.errors import UserError

    if precision == "bf16" and device.type == "cpu" and not native_bf16_cpu():
        raise UserError("train.precision=bf16 needs a CPU with native bf16 (AVX-512 BF16 or AMX); this one has none, "
                        "and its bf16 convolutions run ~100x slower than fp32: use train.precision=fp32")


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Dynamic loss scaling for fp16 (gradients would underflow without it); a no-op scaler otherwise."""
    return torch.amp.GradScaler(device.type, enabled=resolve_precision(precision, device) == "fp16")
