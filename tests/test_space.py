"""Search space: supernet, edge fixing, derivation, genotype JSON, networks built from genotypes."""

import copy
import json

import pytest
import torch

from hybridnas.space.cells import edge_list
from hybridnas.space.genotype import Genotype, GenotypeError
from hybridnas.space.network import build_network
from hybridnas.space.supernet import Supernet, SupernetConfig, derive_genotype

OPS = ["none", "skip", "max_pool_1x3x3", "conv3d_3x3x3", "conv2plus1d_3x3x3", "dil_temporal_d2"]


def small_config(**overrides) -> SupernetConfig:
    base = dict(op_names=OPS, steps=4, stage_widths=(4, 8, 16), num_cells=3, stem_channels=8)
    base.update(overrides)
    return SupernetConfig(**base)


@pytest.mark.parametrize("partial_k,edge_norm", [(1, False), (2, True)])
def test_supernet_forward_backward_on_a_clip(partial_k, edge_norm):
    torch.manual_seed(0)
    net = Supernet(small_config(partial_k=partial_k, edge_norm=edge_norm))
    arch = net.new_architecture()
    logits = net(torch.randn(2, 3, 8, 32, 32), arch)
    assert logits.shape == (2, 10)
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in arch.alphas)
    if edge_norm:
        assert all(p.grad is not None for p in arch.betas)
    conv = net.cells[0].mixed_ops[0].ops[OPS.index("conv3d_3x3x3")]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in conv.parameters())


def _count_op_calls(net: Supernet) -> dict[tuple[int, int, int], int]:
    calls: dict[tuple[int, int, int], int] = {}

    def make_hook(key):
        def hook(module, inputs, output):
            calls[key] = calls.get(key, 0) + 1

        return hook

    for c, cell in enumerate(net.cells):
        for e, mixed in enumerate(cell.mixed_ops):
            for o, op in enumerate(mixed.ops):
                op.register_forward_hook(make_hook((c, e, o)))
    return calls


def test_fixing_an_edge_stops_computing_its_other_ops():
    net = Supernet(small_config())
    arch = net.new_architecture()
    calls = _count_op_calls(net)
    x = torch.randn(1, 3, 4, 16, 16)
    net(x, arch)
    none = OPS.index("none")
    # every non-"none" op of every edge ran once
    assert all(
        calls.get((c, e, o), 0) == 1
        for c in range(3)
        for e in range(14)
        for o in range(len(OPS))
        if o != none
    )
    conv = OPS.index("conv3d_3x3x3")
    arch.fix("normal", 3, conv)
    arch.prune("normal", 4)
    calls.clear()
    out = net(x, arch)
    normal_cells = [c for c, cell in enumerate(net.cells) if not cell.reduction]
    for c in normal_cells:
        assert calls.get((c, 3, conv)) == 1
        assert all(calls.get((c, 3, o), 0) == 0 for o in range(len(OPS)) if o != conv)
        assert all(calls.get((c, 4, o), 0) == 0 for o in range(len(OPS)))
    # the fixed edge's alpha gets no gradient at all, so Adam leaves it alone
    out.sum().backward()
    assert arch.alphas[3].grad is None and arch.alphas[4].grad is None
    assert arch.alphas[0].grad is not None
    # a fixed edge's unused ops get no gradient either: SGD skips them
    other = net.cells[normal_cells[0]].mixed_ops[3].ops[OPS.index("conv2plus1d_3x3x3")]
    assert all(p.grad is None for p in other.parameters())


def _hand_arch(net: Supernet):
    """Alphas where node j's strongest edges and ops are known by construction."""
    arch = net.new_architecture()
    edges = edge_list(4)
    big = {  # (from, to) -> op name with a large logit; "none" wins on other edges
        (0, 2): "conv3d_3x3x3",
        (1, 2): "skip",
        (1, 3): "conv2plus1d_3x3x3",
        (2, 3): "max_pool_1x3x3",
        (0, 4): "dil_temporal_d2",
        (3, 4): "conv3d_3x3x3",
        (2, 5): "skip",
        (4, 5): "conv2plus1d_3x3x3",
    }
    with torch.no_grad():
        for t in range(2):
            for k, edge in enumerate(edges):
                a = arch.alphas[t * 14 + k]
                a.zero_()
                a[OPS.index("none")] = 3.0  # none is strongest everywhere, and never chosen
                if edge in big:
                    a[OPS.index(big[edge])] = 2.0
                else:
                    a[OPS.index("skip")] = 0.5
    expected = tuple(sorted((i, j, op) for (i, j), op in big.items()))
    return arch, expected


def test_derive_on_hand_made_alphas():
    net = Supernet(small_config())
    arch, expected = _hand_arch(net)
    g = derive_genotype(net, arch)
    assert tuple(sorted(g.normal.edges)) == expected
    assert tuple(sorted(g.reduce.edges)) == expected
    assert g.normal.concat == (2, 3, 4, 5)
    capped = derive_genotype(net, arch, max_skips=1)
    assert sum(op == "skip" for _, _, op in capped.normal.edges) == 1
    # the weaker skip (2 -> 5 ties with 1 -> 2; whichever stays, exactly one is demoted)
    assert len(capped.normal.edges) == 8


def test_derive_respects_fixed_edges():
    net = Supernet(small_config())
    arch, _ = _hand_arch(net)
    arch.fix("normal", edge_list(4).index((0, 3)), OPS.index("max_pool_1x3x3"))
    g = derive_genotype(net, arch)
    assert (0, 3, "max_pool_1x3x3") in g.normal.edges
    assert sum(1 for _, j, _ in g.normal.edges if j == 3) == 2


def test_genotype_json_round_trip_and_network_trains(tmp_path):
    net = Supernet(small_config())
    arch, _ = _hand_arch(net)
    g = derive_genotype(net, arch, source="test")
    path = tmp_path / "genotype.json"
    g.save(path)
    g2 = Genotype.load(path)
    assert g2 == g and g2.key() == g.key() and g2.meta["source"] == "test"
    assert Genotype.load(tmp_path) == g  # a run folder works too
    torch.manual_seed(0)
    model = build_network(g2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 8, 32, 32), torch.tensor([0, 1, 2, 3])
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert changed == len(before)


def _doc() -> dict:
    net = Supernet(small_config())
    arch, _ = _hand_arch(net)
    return derive_genotype(net, arch).to_dict()


@pytest.mark.parametrize(
    "breaker,message",
    [
        (
            lambda d: d["cells"]["normal"]["edges"][0].__setitem__(2, "conv9d"),
            "unknown op 'conv9d'",
        ),
        (lambda d: d["cells"]["reduce"]["edges"].append([4, 3, "skip"]), "not an earlier node"),
        (lambda d: d.pop("stem"), "missing key 'stem'"),
        (lambda d: d["clip"].pop("frames"), "missing key 'clip.frames'"),
        (lambda d: d["stage_widths"].__setitem__(1, -8), "'stage_widths[1]' must be positive"),
        (lambda d: d.__setitem__("stage_widths", [8, 16]), "stage_widths"),
        (lambda d: d.__setitem__("version", 99), "'version' 99"),
        (lambda d: d["cells"]["normal"]["edges"].__setitem__(0, [0, 2]), "cells.normal.edges[0]"),
        (lambda d: d["cells"]["normal"].__setitem__("concat", [2, 9]), "concat"),
    ],
)
def test_malformed_genotypes_are_refused_naming_the_problem(breaker, message):
    doc = copy.deepcopy(_doc())
    breaker(doc)
    with pytest.raises(GenotypeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Genotype.from_dict(doc)


def test_bad_json_and_missing_file(tmp_path):
    bad = tmp_path / "g.json"
    bad.write_text("{not json")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.load(bad)
    with pytest.raises(GenotypeError, match="not found"):
        Genotype.load(tmp_path / "missing.json")
    assert json.loads(Genotype.from_dict(_doc()).to_json())["format"] == "hybridnas.genotype"


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="model.op_names"):
        small_config(op_names=["none", "conv9d"])
    with pytest.raises(ValueError, match="model.stage_widths"):
        small_config(stage_widths=(4, 8))
    with pytest.raises(ValueError, match="partial_k"):
        small_config(stage_widths=(6, 8, 16), partial_k=4)


class _SmoothToy(torch.nn.Module):
    """A smooth stand-in for the supernet: finite differences are accurate on it, while ReLU
    kinks in a tiny random supernet make any finite-difference Hessian noisy."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)

    def forward(self, x, arch):
        w = arch.op_weights("normal")[0]
        return w[0] * torch.tanh(self.a(x)) + w[1] * torch.sin(self.b(x)) + w[2] * self.a(x)


def test_second_order_step_matches_exact_unrolled_gradient():
    """grad_alpha L_val(w - xi grad_w L_train(w, alpha), alpha), by autograd, equals the
    architect's first term plus finite-difference Hessian-vector product."""
    from torch.func import functional_call

    from hybridnas.search.differentiable.architect import Architect
    from hybridnas.space.supernet import Architecture

    torch.manual_seed(0)
    net, arch = _SmoothToy(), Architecture(1, ["skip", "conv3d_3x3x3", "max_pool_1x3x3"])
    with torch.no_grad():
        for a in arch.alphas:
            a.normal_()
    train = (torch.randn(16, 6), torch.randint(0, 4, (16,)))
    val = (torch.randn(16, 6), torch.randint(0, 4, (16,)))
    xi, wd = 0.5, 3e-4
    params = list(arch.parameters())
    _, _, approx = Architect(arch, order=2)._unrolled_grads(net, val, train, params, xi, wd)

    ce = torch.nn.functional.cross_entropy
    named = dict(net.named_parameters())
    g = torch.autograd.grad(
        ce(net(train[0], arch), train[1]), list(named.values()), create_graph=True
    )
    unrolled = {n: w - xi * (gi + wd * w) for (n, w), gi in zip(named.items(), g, strict=True)}
    val_loss = ce(functional_call(net, unrolled, (val[0], arch)), val[1])
    exact = torch.autograd.grad(val_loss, params[0])[0]  # the normal cell's one edge
    first_order = torch.autograd.grad(ce(net(val[0], arch), val[1]), params[0])[0]
    assert torch.allclose(approx[0], exact, rtol=1e-3, atol=1e-5), (approx[0], exact)
    # the unrolled correction matters: first order is much further from the exact gradient
    assert (first_order - exact).abs().max() > 10 * (approx[0] - exact).abs().max()


def test_beta_decay_adds_the_logsumexp_of_the_free_alphas_to_the_architecture_loss():
    from hybridnas.search.differentiable.architect import Architect
    from hybridnas.space.supernet import Architecture

    torch.manual_seed(0)
    net, arch = _SmoothToy(), Architecture(1, ["skip", "conv3d_3x3x3", "max_pool_1x3x3"])
    with torch.no_grad():
        for a in arch.alphas:
            a.normal_()
    val = (torch.randn(16, 6), torch.randint(0, 4, (16,)))
    plain, _ = Architect(arch)._val_loss(net, val)
    reg, _ = Architect(arch, beta_decay=0.5)._val_loss(net, val)
    free = [a for a in arch.alphas if a.requires_grad]
    expected = 0.5 * torch.stack([torch.logsumexp(a, -1) for a in free]).mean()
    assert float(reg - plain) == pytest.approx(float(expected), rel=1e-5)
    # its gradient is the softmax (over the edges' mean): the dominant op is pulled down most
    term = Architect(arch, beta_decay=0.5)._beta_term()
    grads = torch.autograd.grad(term, free)
    for a, g in zip(free, grads, strict=True):
        assert torch.allclose(g, 0.5 * torch.softmax(a.detach(), -1) / len(free), atol=1e-6)
