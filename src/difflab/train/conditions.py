"""The condition of each training example, in the fields the objective takes: the class label (null index =
num_classes), the caption's token ids (tokenized once, by the network's own tokenizer; null = all padding) and, for
super-resolution, the example's own low-resolution image A^+ A x (average pooling, upsampled back; null = zeros)."""
from __future__ import annotations

from torch import Tensor, nn

from difflab.condition import LABEL, LOWRES, TOKENS, Condition
from difflab.data.dataset import ImageData
from difflab.errors import UserError


class DataConditions:
    """conditions(idx) -> Condition of rows idx, or None when the objective takes none."""

    def __init__(self, fields: tuple[str, ...], data: ImageData, net: nn.Module, num_classes: int, key: str):
        self.fields, self.num_classes = fields, num_classes
        if LABEL in fields and (data.labels is None or data.num_classes > num_classes):
            raise UserError(f"the model takes {num_classes} classes but the data has "
                            f"{'no labels' if data.labels is None else f'{data.num_classes} classes'}: set {key}")
        if TOKENS in fields and data.captions is None:
            raise UserError("the model reads captions (text.encoder is set) but this data has none: train on "
                            "--data mnist_pairs, or drop text.encoder")
        self.tokens: Tensor | None = net.text.tokenizer(data.captions) if TOKENS in fields else None  # (N, L)
        self.null_tokens = net.text.null if TOKENS in fields else None
        self.labels, self.x = data.labels, data.x
        self.lowres = None
        if LOWRES in fields:
            from difflab.inverse.operators import Downsample

            self.lowres = Downsample(net.cfg.lowres_factor, tuple(data.x.shape[1:]))  # refuses a size it cannot divide

    def __call__(self, idx: Tensor) -> Condition | None:
        cond = None
        if LABEL in self.fields:
            cond = Condition.labels(self.labels[idx], self.num_classes)
        if TOKENS in self.fields:
            text = Condition.tokens(self.tokens[idx], self.null_tokens)
            cond = text if cond is None else cond.join(text)
        if self.lowres is not None:
            lr = lowres_condition(self.lowres, self.lowres.forward(self.x[idx]))
            cond = lr if cond is None else cond.join(lr)
        return cond


def lowres_condition(op, y: Tensor) -> Condition:
    """The super-resolution condition of low-resolution images y: A^+ y at full size, null = zeros."""
    up = op.pinv(y)  # (B, C, H, W)
    return Condition({LOWRES: up}, {LOWRES: up.new_zeros(up.shape[1:])})
