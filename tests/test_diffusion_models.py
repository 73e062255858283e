"""Every registered diffusion model (NODiff, KSDiff): the network's checks, driven by the
registry, with small seeded configurations (tests/diffusion_weights.py).

Network: shapes and finite values for 1, 4 and 8 bands; each stage's loss reaches every
trainable parameter (after one update for those a zero initialisation holds back);
stage 2 leaves the stage-1 prior frozen, and starts as the stage-1 function.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.deep.common import count_params
from models.deep.objectives import get_objective, noising
from models.deep.train_setup import initial_model
from models.deep.weights import card_for, save_weights
from models.iterative.ddim import DDIMScheduler
from models.iterative.schedules import make_schedule
from models.registry import create_model, get_entry, model_names
from tests.diffusion_weights import SMALL, small_model
from tests.floats import accumulation_length, assert_rounding_close

DIFFUSION = model_names("diffusion")
P = 28


def test_both_papers_registered():
    assert {"nodiff", "ksdiff"} <= set(DIFFUSION) == set(SMALL)


@pytest.mark.parametrize("name", DIFFUSION)
def test_registry_record(name):
    info = get_entry(name).info
    assert info.family == "diffusion" and info.needs_weights and info.trainable and info.torch
    assert {"seed", "steps", "tile", "weights"} <= set(info.run_options)
    assert {"adapt", "adapt_steps", "adapt_time", "save_adapted"} <= set(info.run_options)
    assert info.extra["stages"] == 2 and info.extra["objective"] == "diffusion"
    assert 1 <= info.extra["default_steps"] <= 1000
    model = small_model(name)
    assert info.halo(4) == type(model)(n_bands=1).window  # the registered default window
    full = create_model(name, n_bands=4)  # the default (final) stage
    assert info.params == sum(p.numel() for p in full.parameters())
    assert info.extra["params_stage2_trainable"] == count_params(full) < info.params


def _batch(n_bands: int, n: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ms = 0.2 + 0.05 * torch.rand(n, n_bands, P, P, generator=g)
    pan = ms.mean(1, keepdim=True) + 0.01 * torch.randn(n, 1, P, P, generator=g)
    target = ms + 0.01 * torch.randn(n, n_bands, P, P, generator=g)
    return ms, pan, target


def _noise(n: int, bands: int):
    def draw(step: int, channels: int, spatial: bool = True) -> torch.Tensor:
        g = torch.Generator().manual_seed(step)
        shape = (n, channels, P, P) if spatial else (n, channels)
        return torch.randn(shape, generator=g)

    return draw


@pytest.mark.parametrize("name", DIFFUSION)
@pytest.mark.parametrize("n_bands", [1, 4, 8])
def test_generate_shape_and_finite(name, n_bands):
    model = small_model(name, n_bands).eval()
    ms, pan, _ = _batch(n_bands)
    sched = DDIMScheduler(make_schedule("cosine", 1000), 3, prediction=model.prediction)
    with torch.inference_mode():
        out = model.generate(ms, pan, sched, _noise(2, n_bands))
    assert out.shape == ms.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert not torch.equal(out, ms)  # the sampled part is not empty


@pytest.mark.parametrize("name", DIFFUSION)
@pytest.mark.parametrize("stage", [1, 2])
def test_loss_reaches_every_trainable_parameter(name, stage):
    torch.manual_seed(0)
    model = type(small_model(name))(n_bands=4, stage=stage, **SMALL[name])
    goal = get_objective("diffusion")
    rng = np.random.default_rng(0)
    ms, pan, target = _batch(4, n=4)
    from models.deep.objectives import TrainBatch

    batch = TrainBatch(ms, pan, target)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    opt = torch.optim.SGD(params.values(), lr=1e-2)
    reached: set[str] = set()
    for _ in range(2):  # zero-initialised heads pass gradients on after one update
        opt.zero_grad()
        loss = goal.run(model, batch, rng)
        assert torch.isfinite(loss) and loss.ndim == 0
        loss.backward()
        reached |= {n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
        opt.step()
    assert reached == set(params)


@pytest.mark.parametrize("name", DIFFUSION)
def test_stage_two_freezes_the_prior_and_starts_as_it(name, tmp_path):
    """A stage-2 network warm-started from stage-1 weights: the prior's tensors are
    frozen and unchanged by training steps, and with its own additions at their
    initialisation it computes stage 1's function (NODiff: the denoiser given the same
    conditioning image; KSDiff: the regressor given the same latent)."""
    torch.manual_seed(1)
    first = type(small_model(name))(n_bands=4, stage=1, **SMALL[name])
    if name == "nodiff":
        first.config["residual_gain"] = 10.0
    path = save_weights(
        tmp_path / "s1.safetensors", first,
        card_for(first, name, sensor="generic", band_names=["a", "b", "c", "d"], ratio=4,
                 bit_depth=16, scale=65535.0),
    )  # fmt: skip
    second = initial_model(name, 4, {"stage": 2}, path)
    loaded = first.state_dict()
    own = second.state_dict()
    assert all(torch.equal(own[k], v) for k, v in loaded.items())
    prior = {k: v.clone() for k, v in loaded.items() if second.is_prior(k)}
    assert prior
    for k, p in second.named_parameters():
        assert p.requires_grad == (k not in prior), k
    ms, pan, target = _batch(4)
    with torch.no_grad():
        if name == "nodiff":
            x_t, t = torch.randn_like(ms), torch.tensor([10, 900])
            u, v = second.pseudo_sr(ms, pan)
            assert torch.allclose(second.denoise(x_t, t, u, v), first.denoise(x_t, t, u, None))
        else:
            z = first.reference_latent(ms, pan, target)
            assert torch.equal(second.regress(ms, pan, z), first.regress(ms, pan, z))
    opt = torch.optim.AdamW([p for p in second.parameters() if p.requires_grad], lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(2):
        opt.zero_grad()
        second.training_loss(ms, pan, target, rng, noising(second)).backward()
        opt.step()
    after = second.state_dict()
    assert all(torch.equal(after[k], v) for k, v in prior.items())


@pytest.mark.parametrize("name", DIFFUSION)
def test_stage_one_cannot_fuse(name):
    model = type(small_model(name))(n_bands=4, stage=1, **SMALL[name])
    assert not model.fuses
    ms, pan, _ = _batch(4)
    sched = DDIMScheduler(make_schedule("cosine", 1000), 2, prediction=model.prediction)
    with pytest.raises(ValueError, match="stage 2"):
        model.generate(ms, pan, sched, _noise(2, 4))


def test_nodiff_spectral_operator_equals_the_papers_form():
    """The real-arithmetic batched form of SpectralConv equals eq. 5 with eq. 12-14
    written out: per sample ``R = R_base + alpha A diag(g_t) B`` on the retained modes
    of both row bands, every other mode zero."""
    from models.deep.nodiff import SpectralConv

    torch.manual_seed(0)
    op = SpectralConv(6, 4, rank=3, alpha=0.7)
    with torch.no_grad():
        op.lora_b.normal_()
    x = torch.randn(2, 6, 16, 20, dtype=torch.float64).float()
    g = 1 + torch.tanh(torch.randn(2, 3))
    xf = torch.fft.rfft2(x, norm="ortho")
    base = torch.view_as_complex(op.weight.detach())
    lb = torch.view_as_complex(op.lora_b.detach())
    a = op.lora_a.detach().to(xf.dtype)
    ref = torch.zeros_like(xf)
    for k, rows in ((0, slice(0, 4)), (1, slice(12, 16))):
        r = base[k][None] + 0.7 * torch.einsum("ri,nr,orxy->nioxy", a, g.to(xf.dtype), lb[k])
        ref[:, :, rows, :4] = torch.einsum("nixy,nioxy->noxy", xf[:, :, rows, :4], r)
    expect = torch.fft.irfft2(ref, s=(16, 20), norm="ortho")
    with torch.no_grad():
        got = op(x, g)
    assert torch.allclose(got, expect, atol=1e-5 * float(expect.abs().max()))


@pytest.mark.parametrize("unit", [True, False])
def test_ksdiff_modulation_is_the_tucker_product(unit):
    """Eq. 3: W = 1 + G x1 U1 x2 U2 x3 U3 x4 U4, checked against the explicit sum (with
    unit-RMS factor columns, or the raw factors of the first shipped files)."""
    from models.deep.ksdiff_parts import KernelModulation

    torch.manual_seed(0)
    mod = KernelModulation(5, 3, 6, (1, 2, 2, 2), unit_factors=unit)
    with torch.no_grad():
        mod.core[-1].weight.normal_()
    z, feats = torch.randn(2, 4, 6), torch.randn(2, 5, 8, 8)
    with torch.no_grad():
        w = mod(z, feats)
        g = mod.core(z.mean(1)).view(2, 1, 2, 2, 2)
        tokens = mod.backbone(torch.nn.functional.adaptive_avg_pool2d(feats, 4).flatten(2).mT)
        keys = mod.keys(tokens)
        us = []
        for q, val in zip(mod.queries, mod.values, strict=True):
            att = torch.softmax(q @ keys.mT / q.shape[-1] ** 0.5, dim=-1)
            u = val(att @ tokens)
            us.append(u / (u.pow(2).mean(1, keepdim=True) + 1e-6) ** 0.5 if unit else u)
        expect = torch.ones(2, 5, 1, 3, 3)
        for n in range(2):
            for o in range(5):
                for x in range(3):
                    for y in range(3):
                        s = 0.0
                        for b in range(2):
                            for c in range(2):
                                for d in range(2):
                                    s += (g[n, 0, b, c, d] * us[0][n, 0, 0] * us[1][n, o, b]
                                          * us[2][n, x, c] * us[3][n, y, d])  # fmt: skip
                        expect[n, o, 0, x, y] += s
    assert w.shape == (2, 5, 1, 3, 3)
    assert torch.allclose(w, expect, atol=1e-5)


def test_ksdiff_unit_factors_let_the_core_move_the_kernel():
    """With unit factors a core of entries of 0.1 RMS moves W by the core's order (>= 0.01
    RMS over the kernels); with the raw factors of a fresh layer it moved W by far less, the
    reason the first shipped files' modulation never left W = 1."""
    from models.deep.ksdiff_parts import KernelModulation

    z, feats = torch.randn(4, 16, 32), torch.randn(4, 32, 24, 24)
    moved = {}
    for unit in (True, False):
        torch.manual_seed(0)
        mod = KernelModulation(32, 7, 32, (1, 4, 2, 2), unit_factors=unit)
        with torch.no_grad():
            assert torch.equal(mod(z, feats), torch.ones(4, 32, 1, 7, 7))  # W = 1 at init
            mod.core[-1].bias.copy_(
                0.1 * torch.randn(16, generator=torch.Generator().manual_seed(1))
            )
            moved[unit] = float((mod(z, feats) - 1).pow(2).mean().sqrt())
    assert moved[True] >= 0.01
    assert moved[True] > 20 * moved[False]


@pytest.mark.parametrize("name", DIFFUSION)
def test_stage_one_warm_starts_from_final_weights(name, tmp_path):
    """``--init`` with a final (stage-2) file into a stage-1 run, as the ratio-4 set
    starts from the Landsat 8 weights: the prior's tensors are copied, nothing else."""
    from tests.diffusion_weights import write_weights

    path = write_weights(name, tmp_path / "w2.safetensors", stage=2)
    first = initial_model(name, 4, {"stage": 1}, path)
    assert first.stage == 1
    full = small_model(name, stage=2).state_dict()
    own = first.state_dict()
    assert all(torch.equal(own[k], full[k]) for k in own)


def test_ksdiff_block_chunks_its_mlp_without_changing_a_value():
    """Without gradients the ConvNeXt block runs its per-pixel MLP in MLP_CHUNK-pixel
    pieces (a ragged last one here): bit for bit what the whole-map path gives."""
    from models.deep.ksdiff_parts import MLP_CHUNK, ConvNeXtBlock

    torch.manual_seed(0)
    block = ConvNeXtBlock(8, 7, 16, (1, 4, 2, 2)).eval()
    x = torch.randn(3, 8, 40, 50)
    z = torch.randn(3, 16, 16)
    assert 3 * 40 * 50 > MLP_CHUNK and (3 * 40 * 50) % MLP_CHUNK
    with torch.no_grad():
        chunked = block(x, z)
    whole = block(x, z)  # gradients on: the whole maps at once
    assert whole.requires_grad and torch.equal(chunked, whole.detach())


def test_ksdiff_block_is_the_nchw_block_computed_channels_last():
    """The block runs channels-last with one depthwise call per sample: the same values,
    within rounding, as the plain NCHW formula (all samples' kernels as one grouped
    convolution, the MLP on a transposed copy)."""
    from torch.nn import functional as F

    from models.deep.ksdiff_parts import ConvNeXtBlock

    torch.manual_seed(2)
    block = ConvNeXtBlock(8, 7, 16, (1, 4, 2, 2)).eval()
    with torch.no_grad():
        block.modulate.core[-1].weight.normal_(0, 0.1)  # a modulation that is not 1
        x = torch.randn(3, 8, 20, 18)
        z = torch.randn(3, 16, 16)
        n, c, h, w = x.shape
        kernel = block.dw.weight[None] * block.modulate(z, x)
        y = F.conv2d(
            x.reshape(1, n * c, h, w), kernel.reshape(n * c, 1, 7, 7), block.dw.bias.repeat(n),
            padding=3, groups=n * c,
        ).view(n, c, h, w)  # fmt: skip
        ref = x + (block.scale * block.mlp(y.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        got = block(x, z)
    assert not torch.equal(kernel, block.dw.weight[None].expand_as(kernel))
    assert got.shape == ref.shape
    assert_rounding_close(got, ref, accumulation_length(block))


def test_ksdiff_pointwise_is_the_1x1_convolution():
    from models.deep.ksdiff_parts import Pointwise

    torch.manual_seed(1)
    layer = Pointwise(12, 20)
    x = torch.randn(3, 12, 17, 9)
    with torch.no_grad():
        ref = torch.nn.functional.conv2d(x, layer.weight, layer.bias)
        got = layer(x)
    assert got.shape == ref.shape
    assert_rounding_close(got, ref, 12)  # 12 products per output value
