"""The Feature Tailor: a small module at a network's split point, trained on the scene.

Every deep pansharpening network ends where high-dimensional fused features begin to
be mapped to the image's bands (the "general yet critical interface" of the Feature
Tailor abstract, ``../shared/papers/002_*.txt``, first abstract; CAT, third abstract,
sits "between the feature extraction and channel transformation stages"). Each network
names that point: ``split_points``, the module(s) whose *input* is those features (the
head convolution; two for PreMix, whose kernels come from two flows; the last
iteration's two proximal heads for OTPNet). :func:`insert_tailors` puts one
:class:`Tailor` before each, through a forward pre-hook, so the network's code is not
touched, and returns them with a handle that removes them.

A tailor is a residual pair of 1 x 1 convolutions, ``x + B relu(A x)``, with ``B`` zero
at the start: the tailored network starts as the network itself (tested), and
adaptation moves it only as far as the scene's own losses ask.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class Tailor(nn.Module):
    """``x + B relu(A x)`` over ``channels`` feature maps, identity at initialisation."""

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = int(hidden or channels)
        self.a = nn.Conv2d(channels, hidden, 1)
        self.b = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.b.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(torch.relu(self.a(x)))


def split_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every split point ``model`` declares (``split_points``)."""
    names = tuple(getattr(model, "split_points", ()))
    if not names:
        raise ValueError(f"{type(model).__name__} declares no split point")
    found = dict(model.named_modules())
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{type(model).__name__}: no module {', '.join(missing)}")
    return [(n, found[n]) for n in names]


def input_channels(module: nn.Module) -> int:
    """The feature channels a split module takes: its first convolution's inputs."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
        if hasattr(m, "c_in"):
            return int(m.c_in)
    raise ValueError(f"{type(module).__name__} has no convolution to read its inputs from")


class TailorHook:
    """A forward pre-hook that passes a split module's first input through a tailor (a
    class, not a closure: a network with its tailors attached still pickles, for the
    workers of a split scene)."""

    def __init__(self, tailor: Tailor) -> None:
        self.tailor = tailor

    def __call__(self, _module: nn.Module, args: tuple) -> tuple:
        return (self.tailor(args[0]), *args[1:])


def attach_tailors(model: nn.Module) -> nn.ModuleDict:
    """Tailors before every split point of ``model``, kept: registered as the submodule
    ``tailors`` (so the state dict carries them: ``--save-adapted``) and hooked in."""
    existing = getattr(model, "tailors", None)
    if isinstance(existing, nn.ModuleDict):
        return existing
    tailors = nn.ModuleDict()
    ref = next(model.parameters())
    for name, module in split_modules(model):
        tailor = Tailor(input_channels(module)).to(device=ref.device, dtype=ref.dtype)
        tailors[name.replace(".", "/")] = tailor
        module.register_forward_pre_hook(TailorHook(tailor))
    model.tailors = tailors
    return tailors


@contextmanager
def insert_tailors(model: nn.Module) -> Iterator[nn.ModuleDict]:
    """Tailors before every split point of ``model`` for the block, removed after; the
    ModuleDict (keyed by split point, dots as ``/``) holds their parameters."""
    tailors = nn.ModuleDict()
    handles = []
    try:
        for name, module in split_modules(model):
            ref = next(model.parameters())
            tailor = Tailor(input_channels(module)).to(device=ref.device, dtype=ref.dtype)
            tailors[name.replace(".", "/")] = tailor

            def hook(_mod: nn.Module, args: tuple, tailor: Tailor = tailor) -> tuple:
                return (tailor(args[0]), *args[1:])

            handles.append(module.register_forward_pre_hook(hook))
        yield tailors
    finally:
        for h in handles:
            h.remove()
