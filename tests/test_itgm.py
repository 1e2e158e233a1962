"""Long-kernel iTGM: its parameters do not grow with the temporal length, a plain temporal conv's
do, and every registered long variant keeps the shape rule."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from hybridnas.ops import (
    LONG_ITGM_OPS,
    ITGMConv3d,
    TemporalConv3d,
    create_op,
    is_op,
    itgm_op_name,
    list_ops,
)

LENGTHS = [3, 5, 7, 11]
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_long_variants_registered_with_length_and_bumps_in_the_name():
    assert is_op("itgm_3x3")  # old genotypes still load
    assert [itgm_op_name(3, length, n) for length in (5, 7, 11) for n in (2, 4)] == LONG_ITGM_OPS
    assert "itgm_3x3_l7_n4" in LONG_ITGM_OPS
    assert set(LONG_ITGM_OPS) <= set(list_ops())


@pytest.mark.parametrize("num_bumps", [2, 4])
@pytest.mark.parametrize(("c_in", "c_out"), [(4, 8), (16, 16)])
def test_itgm_params_constant_in_length_while_temporal_conv_grows(num_bumps, c_in, c_out):
    k = 3
    expected = k * k * c_in * c_out + num_bumps * c_in * c_out + 2 * num_bumps
    itgm = [
        n_params(ITGMConv3d(c_in, c_out, kernel_size=k, temporal_length=t, num_bumps=num_bumps))
        for t in LENGTHS
    ]
    assert itgm == [expected] * len(LENGTHS)
    plain = [n_params(TemporalConv3d(c_in, c_out, kernel_size=t)) for t in LENGTHS]
    assert plain == [t * c_in * c_out for t in LENGTHS]


@pytest.mark.parametrize("length", LENGTHS)
def test_itgm_op_params_through_the_registry(length):
    name = "itgm_3x3" if length == 3 else itgm_op_name(3, length, 4)
    conv = next(m for m in create_op(name, 4, 8).modules() if isinstance(m, ITGMConv3d))
    assert conv.temporal_length == length
    assert conv.weight().shape == (8, 4, length, 3, 3)
    assert n_params(conv) == 9 * 4 * 8 + 4 * 4 * 8 + 2 * 4


@pytest.mark.parametrize("name", LONG_ITGM_OPS)
@pytest.mark.parametrize(("stride", "out_hw"), [((1, 1, 1), 16), ((1, 2, 2), 8)])
def test_long_itgm_shape(name, stride, out_hw):
    torch.manual_seed(0)
    c = 6
    y = create_op(name, c, c, stride)(torch.randn(2, c, 8, 16, 16))
    assert y.shape == (2, c, 8, out_hw, out_hw)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", LONG_ITGM_OPS)
def test_long_itgm_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    op = create_op(name, 4, 6, (1, 2, 2))
    y = op(torch.randn(2, 4, 8, 6, 6))
    (y * torch.randn_like(y)).sum().backward()  # a plain sum zeroes BN's weight gradient
    for pname, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, (name, pname)


def test_width_init_follows_evanet():
    """EvaNet: raw centres ~ N(0, 0.5), raw widths ~ N(0, 0.1), mixing logits ~ N(0, 1) cut at 2."""
    torch.manual_seed(0)
    conv = ITGMConv3d(64, 64, temporal_length=7, num_bumps=4000)
    assert 0.09 < conv.width_raw.std().item() < 0.11
    assert 0.45 < conv.centre_raw.std().item() < 0.55
    assert conv.mix_logits.abs().max().item() <= 2.0
    width = torch.exp(1.5 - 2 * torch.tanh(conv.width_raw).abs())
    assert width.min().item() > 2.0  # every bump starts wide


def _recipe(name: str) -> dict:
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        cfg = compose("search", overrides=[f"recipe={name}"])
    return OmegaConf.to_container(cfg, resolve=True)


def test_itgm_recipe_is_sdas_video_plus_long_itgm_ops():
    ours, base = _recipe("sdas_itgm_video"), _recipe("sdas_video")
    ops = ours["model"].pop("op_names")
    assert ops[: len(base["model"]["op_names"])] == base["model"].pop("op_names")
    assert {"itgm_3x3_l5_n4", "itgm_3x3_l7_n4", "itgm_3x3_l11_n4"} <= set(ops)
    assert all(is_op(o) for o in ops)
    for key in ("search", "evolution", "model", "data", "stage", "tool"):
        assert ours[key] == base[key], key
    assert ours["recipe_name"] == "sdas_itgm_video"
