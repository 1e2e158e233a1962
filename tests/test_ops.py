"""Op zoo: the shape rule, gradient flow, parameter budgets and block structure."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.video.resnet import Conv2Plus1D

import hybridnas.ops as ops
from hybridnas.config import DEFAULT_OPS
from hybridnas.ops import (
    ITGMConv3d,
    P3DBlock,
    TemporalConv3d,
    conv2plus1d_mid_channels,
    create_op,
    list_ops,
)

STRIDES = [(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 1, 1)]
SIZES = [(1, 1, 1), (3, 5, 5), (4, 8, 8), (8, 7, 9)]
EXPECTED_OPS = {
    "none", "skip", "max_pool_1x3x3", "avg_pool_1x3x3", "max_pool_3x3x3", "avg_pool_3x3x3",
    "conv3d_3x3x3", "conv2plus1d_3x3x3", "p3d_a", "p3d_b", "p3d_c", "dil_temporal_d2",
    "dil_temporal_d4", "itgm_3x3", "se_conv1x3x3", "sep_conv3d_3x3x3", "tsm", "csn_3x3x3",
    "conv2d_1x3x3", "conv_t3",
}  # fmt: skip


def conv_param_count(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv3d)]
    return sum(p.numel() for m in convs for p in m.parameters())


def test_all_families_registered_and_default_list_valid():
    assert set(list_ops()) >= EXPECTED_OPS
    assert DEFAULT_OPS[:2] == ("none", "skip")
    assert set(DEFAULT_OPS) <= set(list_ops())


def test_unknown_op_names_known_ops():
    with pytest.raises(ValueError, match="conv3d_3x3x3"):
        create_op("conv9d", 4, 4, 1)


@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
@pytest.mark.parametrize("stride", STRIDES)
def test_shape_rule(name, stride):
    for c_in, c_out in [(4, 4), (4, 6)]:
        op = create_op(name, c_in, c_out, stride)
        for t, h, w in SIZES:
            y = op(torch.randn(2, c_in, t, h, w))
            expected = tuple(-(-n // s) for n, s in zip((t, h, w), stride, strict=True))
            assert y.shape == (2, c_out, *expected), (name, stride, (c_in, c_out), (t, h, w))


@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2)])
def test_gradients_reach_every_parameter(name, stride):
    torch.manual_seed(0)
    op = create_op(name, 4, 6, stride)
    x = torch.randn(2, 4, 4, 6, 6, requires_grad=True)
    y = op(x)
    if name == "none":
        assert not y.requires_grad and not any(True for _ in op.parameters())
        return
    # A random projection: a plain sum gives BN's weight an exactly zero gradient.
    (y * torch.randn_like(y)).sum().backward()
    for pname, p in op.named_parameters():
        assert p.grad is not None, (name, pname)
        assert p.grad.abs().sum() > 0, (name, pname)
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("length", [3, 5, 7])
@pytest.mark.parametrize(("c_in", "c_out"), [(1, 1), (4, 8), (16, 16), (8, 3)])
def test_itgm_parameter_count_and_profile(length, c_in, c_out):
    k, n = 3, 4
    conv = ITGMConv3d(c_in, c_out, kernel_size=k, temporal_length=length, num_bumps=n)
    expected = k * k * c_in * c_out + n * c_in * c_out + 2 * n
    assert sum(p.numel() for p in conv.parameters()) == expected
    assert conv.weight().shape == (c_out, c_in, length, k, k)
    torch.testing.assert_close(conv.bumps().sum(-1), torch.ones(n))
    torch.testing.assert_close(conv.temporal_profile().sum(-1), torch.ones(c_out, c_in))


def test_itgm_is_the_conv_with_its_inflated_kernel():
    conv = ITGMConv3d(3, 5, temporal_length=5, stride=(2, 1, 2))
    x = torch.randn(1, 3, 6, 5, 7)
    ref = F.conv3d(x, conv.weight(), stride=(2, 1, 2), padding=(2, 1, 1))
    torch.testing.assert_close(conv(x), ref)


@pytest.mark.parametrize(("c_in", "c_out"), [(1, 1), (4, 4), (4, 8), (16, 32), (64, 64), (96, 48)])
def test_conv2plus1d_matches_full_3d_budget_and_torchvision(c_in, c_out):
    mid = conv2plus1d_mid_channels(c_in, c_out)
    ours = conv_param_count(create_op("conv2plus1d_3x3x3", c_in, c_out, 1))
    full = 27 * c_in * c_out
    assert ours == conv_param_count(Conv2Plus1D(c_in, c_out, midplanes=mid))
    assert full - ours < 9 * c_in + 3 * c_out  # floor(M) loses less than one middle channel
    if min(c_in, c_out) >= 16:
        assert abs(ours - full) / full < 0.02


@pytest.mark.parametrize("stride", STRIDES)
def test_p3d_variants_differ_in_structure(stride):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6, 6)
    blocks = {v: P3DBlock(4, 4, stride, v).eval() for v in "abc"}
    with torch.no_grad():
        for v, blk in blocks.items():
            s, t = blk.spatial, blk.temporal
            if v == "a":
                expected = t(s(x))
            elif v == "b":
                expected = s(x) + t(x)
            else:
                expected = s(x) + t(s(x))
            assert torch.allclose(blk(x), expected)
        b = blocks["b"]
        chained = b.temporal(b.spatial(x))
        assert chained.shape != b(x).shape or not torch.allclose(b(x), chained)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_temporal_conv_equals_conv3d(stride, dilation):
    conv = TemporalConv3d(4, 6, 3, stride, dilation)
    x = torch.randn(2, 4, 7, 5, 6)
    ref = F.conv3d(x, conv.weight, None, stride, (dilation, 0, 0), (dilation, 1, 1))
    torch.testing.assert_close(conv(x), ref, atol=1e-5, rtol=1e-5)


def test_attention_blocks_keep_shape_and_gate():
    x = torch.randn(2, 8, 3, 4, 5)
    for block in (ops.SqueezeExcite3d(8), ops.ContextGating3d(8)):
        y = block(x)
        assert y.shape == x.shape
        assert torch.all(y.abs() <= x.abs() + 1e-6)  # a sigmoid gate only scales down


@pytest.mark.parametrize("stride", STRIDES)
def test_avg_pool_matches_torch_where_torch_accepts_the_size(stride):
    x = torch.randn(2, 3, 5, 6, 7)
    ref = F.avg_pool3d(x, 3, stride, 1, count_include_pad=False)
    torch.testing.assert_close(create_op("avg_pool_3x3x3", 3, 3, stride)(x), ref)


def _group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)


@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
def test_ops_take_norm_and_activation(name):
    op = create_op(name, 4, 4, (1, 2, 2), norm=_group_norm, activation=nn.SiLU)
    assert not any(isinstance(m, nn.BatchNorm3d | nn.ReLU) for m in op.modules())
    assert op(torch.randn(2, 4, 3, 6, 6)).shape == (2, 4, 3, 3, 3)


def test_cells_take_norm_and_activation():
    from hybridnas.space.cells import Cell, SearchCell
    from hybridnas.space.genotype import CellSpec

    spec = CellSpec(edges=((0, 2, "conv3d_3x3x3"), (1, 2, "skip")), concat=(2,))
    layers = {"norm": _group_norm, "activation": nn.SiLU}
    shape = {"c_pp": 4, "c_p": 4, "c": 4, "reduction": True, "reduction_prev": True}
    cells = [
        Cell(spec, **shape, reduction_stride=(1, 2, 2), **layers),
        SearchCell(steps=1, **shape, reduction_stride=(1, 2, 2), op_names=["skip"], **layers),
    ]
    for cell in cells:
        assert not any(isinstance(m, nn.BatchNorm3d | nn.ReLU) for m in cell.modules())
    default = Cell(spec, **shape, reduction_stride=(1, 2, 2))
    assert any(isinstance(m, nn.BatchNorm3d) for m in default.modules())


# ---------------------------------------------------------------- fast formulations


class _ReferencePool(nn.Module):
    """The pools as they were written before the fast formulation (nn.MaxPool3d, and the
    zero-padded mean over the in-bounds share for average)."""

    def __init__(self, fast: ops.WindowPool3d) -> None:
        super().__init__()
        self.kind, self.kernel, self.stride = fast.kind, fast.kernel, fast.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            return F.max_pool3d(x, self.kernel, self.stride, tuple(k // 2 for k in self.kernel))
        pad = tuple(p for k in reversed(self.kernel) for p in (k // 2, k // 2))
        ones = F.pad(x.new_ones(1, 1, *x.shape[2:]), pad)
        mean = F.avg_pool3d(F.pad(x, pad), self.kernel, self.stride)
        return mean / F.avg_pool3d(ones, self.kernel, self.stride)


class _ReferenceITGM(nn.Module):
    def __init__(self, fast: ITGMConv3d) -> None:
        super().__init__()
        self.fast = fast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.fast
        return F.conv3d(x, m.weight(), stride=m.stride, padding=m.padding)


def _plain_conv(fast: nn.Conv3d) -> nn.Conv3d:
    conv = nn.Conv3d(
        fast.in_channels, fast.out_channels, fast.kernel_size, fast.stride, fast.padding,
        fast.dilation, fast.groups, bias=fast.bias is not None,
    )  # fmt: skip
    conv.load_state_dict(fast.state_dict())
    return conv


def _reference(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (same parameters) with every fast formulation swapped for the
    plain PyTorch one it replaces."""
    if isinstance(module, ops.ConvBN):  # the op itself: unfolded, with plain parts
        return _reference(nn.Sequential(*module))
    for name, child in module.named_children():
        if isinstance(child, ops.ConvBN):
            child = nn.Sequential(*child)
            setattr(module, name, child)
        if isinstance(child, ops.FastConv3d | TemporalConv3d):
            setattr(module, name, _plain_conv(child))
        elif isinstance(child, ops.WindowPool3d):
            setattr(module, name, _ReferencePool(child))
        elif isinstance(child, ITGMConv3d):
            setattr(module, name, _ReferenceITGM(child))
        else:
            _reference(child)
    return module


def _outputs_and_grads(op: nn.Module, x: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = op(x)
    params = [p for p in op.parameters() if p.requires_grad]
    grads = torch.autograd.grad(y, [x, *params], g, allow_unused=True)
    return [y.detach(), *(gr if gr is not None else torch.zeros(()) for gr in grads)]


@pytest.mark.parametrize("name", sorted(set(list_ops()) - {"none"}))
@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 2), (2, 2, 2)])
@pytest.mark.parametrize("batch", [1, 3])
def test_fast_formulation_matches_the_plain_one(name, stride, batch):
    """Same parameters, same outputs and gradients as the plain PyTorch modules, at batch 1
    (where the oneDNN routing applies) and above: max abs difference <= 1e-5, relative to the
    largest magnitude where that exceeds 1 (a weight gradient sums thousands of products)."""
    torch.manual_seed(0)
    fast = create_op(name, 6, 6, stride)
    for bn in (m for m in fast.modules() if isinstance(m, nn.BatchNorm3d)):
        for t in (bn.weight.data, bn.bias.data, bn.running_mean):
            t.copy_(torch.randn_like(t))
        bn.running_var.uniform_(0.5, 2.0)  # statistics a trained net has, to fold into convs
    import copy

    plain = _reference(copy.deepcopy(fast))
    x = torch.randn(batch, 6, 5, 9, 8)
    y = fast(x)
    g = torch.randn_like(y)
    for a, b in zip(_outputs_and_grads(fast, x, g), _outputs_and_grads(plain, x, g), strict=True):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, float(b.abs().max())), name


def _with_trained_statistics(op: nn.Module) -> nn.Module:
    for bn in (m for m in op.modules() if isinstance(m, nn.BatchNorm3d)):
        for t in (bn.weight.data, bn.bias.data, bn.running_mean):
            t.copy_(torch.randn_like(t))
        bn.running_var.uniform_(0.5, 2.0)  # statistics a trained net has, to fold into convs
    return op


@pytest.mark.parametrize("name", sorted(set(list_ops()) - {"none"}))
@pytest.mark.parametrize("stride", [(1, 1, 1), (1, 2, 2), (2, 2, 2)])
@pytest.mark.parametrize("batch", [1, 3])
def test_every_inference_formulation_matches_the_plain_one(name, stride, batch):
    """In inference each op may run any of its formulations (the timed choice): every one of
    them, pinned in turn, gives the plain modules' output to <= 1e-5."""
    import copy

    from hybridnas.ops.choice import pinned_choice

    torch.manual_seed(0)
    fast = _with_trained_statistics(create_op(name, 6, 6, stride)).eval()
    plain = _reference(copy.deepcopy(fast)).eval()
    x = torch.randn(batch, 6, 5, 9, 8)
    with torch.no_grad():
        expected = plain(x)
        for index in range(3):
            with pinned_choice(index):
                y = fast(x)
            assert (y - expected).abs().max() <= 1e-5 * max(1.0, float(expected.abs().max()))


def test_the_kernel_choice_is_timed_in_place_then_remembered():
    from hybridnas.ops import choice, layers

    torch.manual_seed(0)
    x, w = torch.randn(1, 8, 8, 16, 16), torch.randn(8, 8, 3, 3, 3) / 15
    args = (x, w, None, (1, 1, 1), (1, 1, 1), (1, 1, 1), 1)
    assert (layers._onednn_conv(*args) - layers._plain_conv(*args)).abs().max() <= 1e-5
    choice.forget_choices()
    with torch.no_grad():
        for _ in range(choice.TRIALS * 2):
            assert not choice._FASTEST  # still on trial: each kernel timed TRIALS times
            layers.fast_conv(*args)
    assert len(choice._FASTEST) == 1 and not choice._TRIAL_TIMES
    layers.fast_conv(x, w, None, (1, 1, 1), (1, 1, 1))  # with gradients: PyTorch's choice
    assert len(choice._FASTEST) == 1


def test_no_kernel_choice_under_autocast_other_dtypes_or_gradients():
    from hybridnas.ops.choice import may_choose

    x = torch.randn(1, 2, 2, 2, 2)
    with torch.no_grad():
        assert may_choose(x)
        with torch.autocast("cpu", torch.bfloat16):
            assert not may_choose(x)  # oneDNN called directly would skip autocast's cast
        assert not may_choose(x.double())
        batch = torch.randn(4, 2, 2, 2, 2)
        assert not may_choose(batch)  # a batch's outputs never depend on a timing race
        assert may_choose(batch, exact=True)  # unless every formulation gives the same bits
        torch.use_deterministic_algorithms(True)
        try:
            assert not may_choose(x, exact=True)
        finally:
            torch.use_deterministic_algorithms(False)
    assert not may_choose(x)  # gradients wanted: training keeps its one formulation


def test_a_batch_in_inference_gives_the_same_bits_every_run():
    """Validation and proxy scores run batches in inference: no kernel race may reach them."""
    from hybridnas.ops import choice

    torch.manual_seed(0)
    ops_ = [create_op(n, 6, 6, (1, 2, 2)).eval() for n in ("conv2plus1d_3x3x3", "avg_pool_3x3x3")]
    x = torch.randn(4, 6, 5, 9, 8)
    with torch.no_grad():
        first = [op(x) for op in ops_]
        for index in range(3):
            with choice.pinned_choice(index):
                assert all(torch.equal(op(x), y) for op, y in zip(ops_, first, strict=True))


@pytest.mark.parametrize("size", [(5, 9, 8), (4, 8, 8), (6, 7, 10)])
@pytest.mark.parametrize("stride", [(1, 2, 2), (2, 2, 2), (3, 2, 3)])
def test_factorized_reduce_equals_the_padded_darts_form(size, stride):
    """conv_a on every stride-th voxel, conv_b on the input shifted one voxel (zero-padded at
    the end), concat, BN: in training and, with the BN folded, in inference."""
    torch.manual_seed(0)
    op = _with_trained_statistics(ops.FactorizedReduce3d(6, 8, stride))
    x = torch.randn(2, 6, *size)

    def padded(x: torch.Tensor) -> torch.Tensor:
        r = F.relu(x)
        shift = op.shift
        moved = F.pad(r, (0, shift[2], 0, shift[1], 0, shift[0]))[
            :, :, shift[0] :, shift[1] :, shift[2] :
        ]
        a = F.conv3d(r, op.conv_a.weight, stride=stride)
        b = F.conv3d(moved, op.conv_b.weight, stride=stride)
        return op.bn(torch.cat([a, b], 1))

    for mode in (op.train, op.eval):
        mode()
        with torch.no_grad():
            expected = padded(x)
            assert (op(x) - expected).abs().max() <= 1e-5
            assert (op(x[:1]) - padded(x[:1])).abs().max() <= 1e-5


def test_folded_weights_follow_in_place_changes():
    """The BN folded into a conv is rebuilt when a weight or statistic changes in place (an
    EMA update, load_state_dict), not served stale from the cache."""
    op = _with_trained_statistics(create_op("conv3d_3x3x3", 4, 4, (1, 1, 1))).eval()
    x = torch.randn(1, 4, 4, 6, 6)
    with torch.no_grad():
        before = op(x)
        op[-1].running_var.mul_(4)
        after = op(x)
        expected = nn.Sequential(*op)(x)
    assert not torch.allclose(before, after)
    assert (after - expected).abs().max() <= 1e-5


def test_none_allocates_nothing_and_is_zero():
    y = create_op("none", 4, 6, (1, 2, 2))(torch.randn(2, 4, 4, 8, 8))
    assert y.shape == (2, 6, 4, 4, 4) and not y.any()
    assert y.stride() == (0,) * 5  # one scalar, expanded


def test_itgm_kernel_is_built_once_in_eval_and_follows_weight_changes():
    conv = ITGMConv3d(3, 4)
    x = torch.randn(1, 3, 4, 6, 6)
    with torch.no_grad():
        first = conv(x)
        assert conv.kernel() is conv.kernel()  # cached, not rebuilt
        conv.spatial_weight.mul_(2)  # an in-place change (optimizer step, load_state_dict)
        second = conv(x)
    assert torch.allclose(second, 2 * first, atol=1e-5)
    y = conv(x)  # with gradients: built afresh, and they reach the parameters
    y.sum().backward()
    assert conv.spatial_weight.grad is not None and conv.mix_logits.grad is not None


def test_temporal_shift_moves_one_eighth_each_way():
    shift = ops.TemporalShift(16)
    x = torch.arange(16 * 4, dtype=torch.float32).view(1, 16, 4, 1, 1)
    y = shift(x)
    assert torch.equal(y[:, :2, 1:], x[:, :2, :-1]) and not y[:, :2, 0].any()
    assert torch.equal(y[:, 2:4, :-1], x[:, 2:4, 1:]) and not y[:, 2:4, -1].any()
    assert torch.equal(y[:, 4:], x[:, 4:])
    assert ops.TemporalShift(4).fold == 1  # small cells still shift one channel each way


def test_fast_conv_is_counted_and_exported_as_a_plain_convolution():
    from hybridnas.measure.counts import count_flops

    conv = ops.FastConv3d(4, 8, 3, padding=1, bias=False)
    flops = count_flops(conv, (4, 8, 16, 16))
    assert flops == 2 * 8 * 4 * 27 * 8 * 16 * 16
    program = torch.export.export(conv.eval(), (torch.randn(1, 4, 8, 16, 16),))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("mkldnn" in t for t in targets), targets


def test_csn_mixes_channels_only_pointwise():
    op = create_op("csn_3x3x3", 4, 8, 1)
    convs = [m for m in op.modules() if isinstance(m, nn.Conv3d)]
    assert [c.kernel_size for c in convs] == [(1, 1, 1), (3, 3, 3), (1, 1, 1)]
    assert convs[1].groups == 8
