"""Registry-driven checks of every deep network at its published size.

Shapes, finiteness, gradients reaching every parameter, a receptive field no wider than
the registered halo (what the tiling engine trusts), tiles equal to the whole image,
and a few optimiser steps lowering the loss on a fixed batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.deep.common import count_params
from models.deep.runtime import predict
from models.registry import create_model, get_entry, model_names
from tests.floats import EPS64, accumulation_length, assert_rounding_close
from tests.probe import run_python

DEEP = model_names("deep")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(n: int, b: int, h: int, w: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, b, h, w, generator=g, dtype=dtype), torch.rand(
        n, 1, h, w, generator=g, dtype=dtype
    )


def _local(name: str, n_bands: int = 4, **kw):
    """The published network, strictly local (LAGNet without its global harmonic bias)."""
    if name == "lagnet":
        kw.setdefault("global_bias", False)
    return create_model(name, n_bands=n_bands, **kw)


def _at_ratio(name: str, ratio: int) -> dict:
    """Constructor arguments for ``ratio`` of a network whose operators depend on it."""
    return {"ratio": ratio} if get_entry(name).info.extra.get("physics") else {}


def _lattice(net) -> int:
    """The patch lattice the engine gives ``net`` (tiling.blended: least common multiple)."""
    ratio = int(net.config.get("ratio", 1)) if net.ratio_aligned else 1
    return int(np.lcm(ratio, int(net.lattice)))


SEED_MODELS = {"otpnet", "premix-b", "premix-h"}


def test_all_published_networks_registered():
    assert set(DEEP) == {"pnn", "pannet", "dicnn", "fusionnet", "lagnet"} | SEED_MODELS


def test_listing_models_does_not_import_torch():
    code = (
        "import sys; from models.registry import model_names, get_entry, available_weights;"
        "names = model_names('deep'); [get_entry(n).info.to_dict() for n in names];"
        "[available_weights(n) for n in names];"
        "assert 'torch' not in sys.modules, 'torch imported'; print(len(names))"
    )
    assert run_python(code).strip() == str(len(DEEP))


@pytest.mark.parametrize("name", DEEP)
def test_registry_metadata_matches_network(name):
    info = get_entry(name).info
    assert info.family == "deep" and info.needs_weights
    assert "2^bit_depth - 1" in info.normalisation
    assert info.licence and info.reference
    net4 = create_model(name, n_bands=4)
    net8 = create_model(name, n_bands=8)
    assert count_params(net4) == info.params
    assert count_params(net8) == info.extra["params_8_bands"]
    for ratio in (2, 4):
        assert info.halo(ratio) == create_model(name, n_bands=4, **_at_ratio(name, ratio)).halo
    assert info.extra["global_context"] is (name == "lagnet")


@pytest.mark.parametrize("name", DEEP)
@pytest.mark.parametrize("n_bands", [1, 4, 8])
def test_forward_shape_and_finite(name, n_bands):
    net = create_model(name, n_bands=n_bands)
    ms, pan = _inputs(2, n_bands, 33, 40)
    out = net(ms, pan)
    assert out.shape == (2, n_bands, 33, 40)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", DEEP)
def test_wrong_inputs_rejected(name):
    net = create_model(name, n_bands=4)
    ms, pan = _inputs(1, 3, 16, 16)
    with pytest.raises(ValueError, match="4 bands"):
        net(ms, pan)
    ms, pan = _inputs(1, 4, 16, 16)
    with pytest.raises(ValueError, match="pan must be"):
        net(ms, pan[:, :, :8])


@pytest.mark.parametrize("name", DEEP)
def test_gradients_reach_every_parameter(name):
    net = create_model(name, n_bands=4)
    ms, pan = _inputs(2, 4, 24, 24)
    target = torch.rand(2, 4, 24, 24, generator=torch.Generator().manual_seed(5))
    (net(ms, pan) - target).abs().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{name}.{pname}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname}: non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname}: zero gradient"


@pytest.mark.parametrize("name", DEEP)
def test_receptive_field_equals_halo(name):
    """d out[centre] / d inputs is zero beyond the halo and reaches its edge (at the
    worst of the centre's phases on the patch lattice; ``halo_slack`` pixels short where
    the registry documents its halo as an upper bound)."""
    info = get_entry(name).info
    halo = info.halo(4)
    net = _local(name, **_at_ratio(name, 4)).double()
    size = 2 * halo + 17
    slack = int(info.extra.get("halo_slack", 0))
    phases = _lattice(net) if slack == 0 else 1  # a bound needs no worst phase
    reach = 0
    for c in range(halo + 8, halo + 8 + phases):
        ms, pan = _inputs(1, 4, size, size, torch.float64)
        ms.requires_grad_(True)
        pan.requires_grad_(True)
        net(ms, pan)[0, :, c, c].sum().backward()
        grad = ms.grad.abs().sum(dim=(0, 1)) + pan.grad.abs().sum(dim=(0, 1))
        rows, cols = torch.nonzero(grad > 0, as_tuple=True)
        reach = max(reach, int(max((rows - c).abs().max(), (cols - c).abs().max())))
    assert reach <= halo, f"{name}: receptive half-width {reach} beyond the halo {halo}"
    assert reach >= halo - slack, f"{name}: receptive half-width {reach}, registry says {halo}"


@pytest.mark.parametrize("name", DEEP)
def test_tile_core_equals_whole_image(name):
    """A tile read with the halo, starting on the engine's patch lattice, reproduces the
    whole-image output in its core."""
    net = _local(name, **_at_ratio(name, 2)).eval()
    halo, step = get_entry(name).info.halo(2), _lattice(net)
    size = -(-(2 * halo + 48) // step) * step
    ms, pan = _inputs(1, 4, size, size)
    with torch.inference_mode():
        whole = net(ms, pan)
        r0, c0 = halo + 11, halo + 6  # core corners off the lattice
        r1, c1 = r0 + 24, c0 + 24
        t0, u0 = (r0 - halo) // step * step, (c0 - halo) // step * step
        sl = (slice(None), slice(None), slice(t0, r1 + halo), slice(u0, c1 + halo))
        tile = net(ms[sl], pan[sl])
    core = tile[:, :, r0 - t0 : r1 - t0, c0 - u0 : c1 - u0]
    assert_rounding_close(core, whole[:, :, r0:r1, c0:c1], accumulation_length(net))


@pytest.mark.parametrize("name", DEEP)
def test_few_steps_lower_loss_on_fixed_batch(name):
    net = create_model(name, n_bands=4)
    g = torch.Generator().manual_seed(3)
    ms = torch.rand(4, 4, 16, 16, generator=g)
    pan = ms.mean(1, keepdim=True) + 0.1 * torch.rand(4, 1, 16, 16, generator=g)
    target = (ms + 0.2 * (pan - ms.mean(1, keepdim=True))).clamp(0, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = (net(ms, pan) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], f"{name}: {losses[0]:.4f} -> {losses[-1]:.4f}"


@pytest.mark.parametrize("name", DEEP)
def test_predict_numpy_roundtrip_and_scaling(name):
    net = create_model(name, n_bands=3).eval()
    rng = np.random.default_rng(0)
    ms = rng.uniform(0, 255, (2, 3, 20, 20))
    pan = rng.uniform(0, 255, (2, 20, 20))
    out = predict(net, ms, pan, bit_depth=8)
    assert out.dtype == np.float32 and out.shape == ms.shape
    with torch.inference_mode():
        ref = (
            net(
                torch.tensor(ms / 255, dtype=torch.float32),
                torch.tensor(pan[:, None] / 255, dtype=torch.float32),
            )
            * 255
        )
    # predict rounds each input twice (float32 cast, then division), the reference once
    # (float64 division, then cast), and both round the output's scaling: 3 more terms
    terms = accumulation_length(net)
    assert_rounding_close(out, ref, terms + 3)
    # one patch without the batch axis, chunked batches agree with one pass
    single = predict(net, ms[0], pan[0], bit_depth=8)
    assert_rounding_close(single, out[0], terms)
    assert_rounding_close(predict(net, ms, pan, 8, batch_size=1), out, terms)
    assert net.training is False


def test_predict_masks_non_finite_inputs():
    net = create_model("lagnet", n_bands=2).eval()
    ms = np.full((1, 2, 16, 16), 100.0)
    ms[0, 0, 3, 3] = np.nan
    out = predict(net, ms, np.full((1, 1, 16, 16), 100.0), bit_depth=8)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("k", [3, 5])
def test_lagconv_equals_the_direct_unfold_form(k):
    """The one-GEMM shift-and-sum LAGConv equals the paper's form (eq. 3-4): unfold the
    k x k neighbourhood, multiply by the LCA weights, apply the static kernel; values and
    gradients of input and every parameter, float64."""
    import torch
    import torch.nn.functional as F

    from models.deep.lagnet import LAGConv

    torch.manual_seed(3)
    conv = LAGConv(5, 7, k).double()
    x = torch.rand(2, 5, 11, 13, dtype=torch.float64, requires_grad=True)

    def direct(x):
        n, c, h, w = x.shape
        mod = conv.context(x).unsqueeze(1)
        patches = F.unfold(x, k, padding=k // 2).view(n, c, k * k, h, w)
        y = torch.matmul(conv.weight.view(7, c * k * k), (patches * mod).view(n, c * k * k, h * w))
        return y.view(n, 7, h, w) + conv.harmonic(x)

    fast, ref = conv(x), direct(x)
    # two summation orders of the same float64 products (tests/floats.py); a parameter's
    # gradient also sums over every output position (N x H x W)
    terms = accumulation_length(conv)
    assert_rounding_close(fast, ref, terms, eps=EPS64)
    params = [x, *conv.parameters()]
    g_fast = torch.autograd.grad((fast**2).sum(), params)
    g_ref = torch.autograd.grad((ref**2).sum(), params)
    positions = x.shape[0] * x.shape[2] * x.shape[3]
    for a, b in zip(g_fast, g_ref, strict=True):
        assert_rounding_close(a, b, terms + positions, eps=EPS64)
