"""K conv nets of one architecture as one network, stacked along the channels.

Model k's activations are channels ``k C .. (k + 1) C - 1`` of one ``(N, K C, H, W)`` tensor,
row n of the batch holding image n of each model's own batch. Every layer then acts on the K
models at once and on each alone:

- ``Conv2d(C_in, C_out)`` becomes ``Conv2d(K C_in, K C_out, groups=K)`` (:class:`StackedConv2d`):
  group k convolves model k's channels with model k's kernel (the K kernels concatenated along
  the output axis);
- ``BatchNorm2d(C)`` becomes ``BatchNorm2d(K C)``: a channel's batch statistics are taken over
  its own model's images, so batch and running statistics are exactly per model;
- ReLU and the pools act per channel, so they stay as they are;
- the last ``Linear(C, O)`` after a global pool becomes one einsum over the ``(N, K, C)``
  pooled features with the stacked ``(K, O, C)`` weights: logits ``(K, N, O)``.

Unlike ``torch.func.vmap`` of ``functional_call``, which builds the same grouped convolution
but copies the activations from the model axis into the channels and back around every
layer, nothing here moves between layouts, so a ``channels_last`` input stays channels-last
all the way. SGD is elementwise, so one optimiser on the stacked weights steps each model as
its own optimiser would. :func:`stackable` says which ``nn.Sequential`` nets this covers
(``small_cnn`` and the VGGs of ``harness.zoo``); :meth:`StackedConvNet.model_state` gives a
model's weights back as its own ``state_dict``.

One rule picks how a stacked convolution computes, the same weights and the same model either
way: **on a CPU, a convolution of one-pixel images whose padding centres its odd kernel (VGG's
3x3 with padding 1 on the 1x1 maps left after four pools of 16x16 images) is one matrix product
per model with the kernels' centre taps** (:meth:`StackedConv2d.centre_tap_product`; the other
taps see only padding, so it also skips 8/9 of the arithmetic and their gradients stay exactly
zero); every other convolution is the grouped one. Measured on this project's 2-core CPU
(torch 2.14.1, one thread, load average about 3), one training step of VGG-6 at K = 8, batch 32,
16x16 images, one layer's form swapped at a time; each figure is the step's time with that
form over its time with the rule's choice (median of n=15 paired steps, n=25 for the 4x4 and
2x2 layers; above 1: the rule's choice is faster):

| layer (per model), image size | grouped | grouped, NCHW | K ungrouped convs, NCHW | unfolded, batched matmul |
|---|---|---|---|---|
| 3 -> 64, 16x16 (the 3-channel first layer) | chosen | 1.33 | 1.20 | |
| 64 -> 64, 8x8 | chosen | 1.22 | 1.15 | |
| 64 -> 64, 4x4 and 2x2 | chosen | 0.98 to 1.05 | 0.95 to 1.06 | 0.95 to 0.98 (2x2) |
| 64 -> 512, 1x1 (centre-tap product chosen) | 1.53 | | 1.14 | 1.04 |

The grouped kernel on channels-last input (the layout the stacked input arrives in) is the
fastest form for the 3-channel first layer; at 4x4 and 2x2 every form is within the noise, so
they stay grouped. Only the one-pixel layer is slow as a grouped convolution: oneDNN's grouped
backward takes about 10 times its forward there. On 32x32 images (CIFAR-10) a VGG's last
convolution sees 2x2 maps, so the rule does not fire there. On CUDA every convolution stays
grouped (cuDNN's kernels, not measured here). Stored runs name the path with this rule by its
stored name (``harness.specs.STORED_PATH_NAMES``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# Layers acting on each channel alone: the same module serves the stacked channels.
CHANNELWISE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity)


class NotStackable(ValueError):
    """A model has a layer the stacked network cannot hold; the message names it."""


def _layers(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise NotStackable(f"only nn.Sequential conv nets stack along channels, got a {type(model).__name__}")
    flat = []
    for layer in model:
        flat += _layers(layer) if isinstance(layer, nn.Sequential) else [layer]
    return flat


def _check(layers: list[nn.Module]) -> None:
    if (len(layers) < 3 or not isinstance(layers[-1], nn.Linear) or not isinstance(layers[-2], nn.Flatten)
            or not isinstance(layers[-3], (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
            or layers[-3].output_size not in (1, (1, 1))):
        raise NotStackable("a stacked net ends in a global pool, Flatten and Linear")
    for layer in layers[:-3]:
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.padding_mode != "zeros":
                raise NotStackable(f"{layer}: only ungrouped, zero-padded convolutions stack")
        elif isinstance(layer, nn.BatchNorm2d):
            if not (layer.affine and layer.track_running_stats) or layer.momentum is None:
                raise NotStackable(f"{layer}: only affine BatchNorm with running statistics and a momentum stacks")
        elif not isinstance(layer, CHANNELWISE):
            raise NotStackable(f"{type(layer).__name__} does not stack along channels")


def stackable(model: nn.Module) -> bool:
    try:
        _check(_layers(model))
    except NotStackable:
        return False
    return True


def _cat(tensors) -> torch.Tensor:
    return torch.cat([t.detach() for t in tensors]).clone()


class StackedConv2d(nn.Conv2d):
    """``Conv2d(K C_in, K C_out, groups=K)``, on a CPU a matrix product per model where only the
    kernels' centre taps see the image (the rule and its measurements: module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and self.sees_only_centre_taps(x):
            return self.centre_tap_product(x)
        return super().forward(x)

    def sees_only_centre_taps(self, x: torch.Tensor) -> bool:
        """One-pixel images under padding that centres an odd kernel on each pixel: the output is
        one pixel, and every other tap falls on the zero padding."""
        return x.shape[-2:] == (1, 1) and not isinstance(self.padding, str) and all(
            kernel % 2 == 1 and padding == dilation * (kernel - 1) // 2
            for kernel, padding, dilation in zip(self.kernel_size, self.padding, self.dilation))

    def centre_tap_product(self, x: torch.Tensor) -> torch.Tensor:
        # The other taps' gradients are exactly zero here, as the convolution's are: they saw only zeros.
        centre = self.weight[:, :, self.kernel_size[0] // 2, self.kernel_size[1] // 2]
        kernels = centre.unflatten(0, (self.groups, -1))                     # (K, C_out, C_in)
        pixels = x.flatten(1).unflatten(1, (self.groups, -1)).permute(1, 2, 0)   # (K, C_in, N)
        # Kernels first: the weight gradient comes out in the weight's own layout, with no copy.
        out = torch.bmm(kernels, pixels).permute(2, 0, 1).flatten(1)         # (N, K C_out)
        if self.bias is not None:
            out = out + self.bias
        return out[:, :, None, None]


def _stack_conv(convs: list[nn.Conv2d]) -> StackedConv2d:
    first, k = convs[0], len(convs)
    stacked = StackedConv2d(k * first.in_channels, k * first.out_channels, first.kernel_size, first.stride,
                        first.padding, first.dilation, groups=k, bias=first.bias is not None,
                        device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        stacked.weight.copy_(_cat(c.weight for c in convs))
        if first.bias is not None:
            stacked.bias.copy_(_cat(c.bias for c in convs))
    return stacked


def _stack_batchnorm(norms: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    first, k = norms[0], len(norms)
    stacked = nn.BatchNorm2d(k * first.num_features, first.eps, first.momentum,
                             device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(stacked, name).copy_(_cat(getattr(n, name) for n in norms))
        stacked.num_batches_tracked.copy_(first.num_batches_tracked)
    return stacked


class StackedConvNet(nn.Module):
    """``models`` (same architecture, their own weights) as one network (module docstring).

    ``forward`` takes ``(N, K C_in, H, W)`` (channel ``k C_in + c`` is channel c of model k's
    image) and returns logits ``(K, N, O)``.
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        per_model = [_layers(m) for m in models]
        for layers in per_model:
            _check(layers)
        if len({tuple(type(layer) for layer in layers) for layers in per_model}) != 1:
            raise NotStackable("the models differ in architecture")
        self.n_models = len(models)
        body = []
        for position in range(len(per_model[0]) - 2):
            same = [layers[position] for layers in per_model]
            if isinstance(same[0], nn.Conv2d):
                body.append(_stack_conv(same))
            elif isinstance(same[0], nn.BatchNorm2d):
                body.append(_stack_batchnorm(same))
            else:
                body.append(copy.deepcopy(same[0]))
        self.body = nn.Sequential(*body)
        heads = [layers[-1] for layers in per_model]
        self.head_weight = nn.Parameter(torch.stack([h.weight.detach() for h in heads]).clone())  # (K, O, C)
        self.head_bias = nn.Parameter(torch.stack([h.bias.detach() for h in heads]).clone())      # (K, O)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x).flatten(1).unflatten(1, (self.n_models, -1))   # (N, K, C)
        return torch.einsum("nkc,koc->kno", features, self.head_weight) + self.head_bias[:, None]

    def model_state(self, k: int, template: nn.Module) -> dict[str, torch.Tensor]:
        """Model k's weights and buffers as ``template``'s ``state_dict`` (a model of the same
        architecture) names them."""
        stacked = [layer for layer in self.body]
        pieces = {}
        for (name, module), layer in zip(_named_layers(template)[:-2], stacked):
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
                for key, value in layer.state_dict().items():
                    if key == "num_batches_tracked":
                        pieces[f"{name}.{key}"] = value.clone()
                    else:
                        pieces[f"{name}.{key}"] = value.chunk(self.n_models)[k].clone()
        head_name = _named_layers(template)[-1][0]
        pieces[f"{head_name}.weight"] = self.head_weight[k].detach().clone()
        pieces[f"{head_name}.bias"] = self.head_bias[k].detach().clone()
        return pieces


def _named_layers(model: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    named = []
    for name, layer in model.named_children():
        full = f"{prefix}{name}"
        named += _named_layers(layer, full + ".") if isinstance(layer, nn.Sequential) else [(full, layer)]
    return named
