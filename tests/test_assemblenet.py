"""AssembleNet connectivity: learned connection weights in the cells, multi-input nodes, and
rewiring guided by the weights each candidate learned (``evolution.rewire_guidance``)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_DATA
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hybridnas.config import ConfigError, EvolutionConfig, FitnessConfig
from hybridnas.search.evolution.mutations import (
    Guidance,
    add_input,
    drop_input,
    mutate,
    removal_weights,
)
from hybridnas.space.genotype import CellSpec, Genotype, validate
from hybridnas.space.network import build_network, read_connection_weights

ROOT = Path(__file__).resolve().parent.parent
OPS = ("none", "skip", "max_pool_1x3x3", "conv3d_3x3x3", "conv2plus1d_3x3x3")


def _genotype() -> Genotype:
    edges = tuple((i, j, OPS[1 + (i + j) % 4]) for j in range(2, 5) for i in (0, j - 1))
    cell = CellSpec(edges=edges, concat=(2, 3, 4))
    return Genotype(
        normal=cell,
        reduce=cell,
        stage_widths=(4, 8, 8),
        stem_channels=4,
        num_cells=3,
        frames=4,
        size=16,
    )


def test_connection_weights_start_at_half_and_learn():
    torch.manual_seed(0)
    g = _genotype()
    plain, weighted = build_network(g), build_network(g, connection_weights=True)
    assert not [n for n, _ in plain.named_parameters() if "connection" in n]
    assert read_connection_weights(plain) is None
    weighted.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 4, 16, 16)
    plain.eval(), weighted.eval()
    # every node input scaled by sigmoid(0) = 0.5: not the plain sum, so the weights act
    assert not torch.allclose(plain(x), weighted(x), atol=1e-4)
    weights = read_connection_weights(weighted)
    assert set(weights) == {"normal", "reduce"}
    assert [row[:2] for row in weights["normal"]] == [[i, j] for i, j, _ in g.normal.edges]
    assert all(w == 0.5 for rows in weights.values() for _, _, w in rows)
    weighted.train()
    loss = torch.nn.functional.cross_entropy(weighted(x), torch.tensor([0, 1]))
    loss.backward()
    grads = [p.grad for n, p in weighted.named_parameters() if n.endswith("connection_logits")]
    assert len(grads) == 3 and all(gr is not None and gr.abs().sum() > 0 for gr in grads)


def _guided(g: Genotype, weak: tuple[int, int]) -> Guidance:
    """Connections as one individual learned them: every edge 0.95 but ``weak`` at 0.05."""
    rows = [[i, j, 0.05 if (i, j) == weak else 0.95] for i, j, _ in g.normal.edges]
    return Guidance.uniform(OPS).with_connections({"normal": rows, "reduce": rows})


def test_learned_weights_decide_which_connection_goes():
    g = _genotype()
    guidance = _guided(g, weak=(2, 3))
    assert guidance.strength("normal", (2, 3)) == 0.05
    assert guidance.strength("normal", (1, 3)) == 0.5  # a connection it does not have
    w = removal_weights(g, "normal", guidance)
    assert w[[e[:2] for e in g.normal.edges].index((2, 3))] == max(w)
    rng = np.random.default_rng(0)
    wide = g.replace(normal=add_input(g, rng, guidance, max_inputs=3)[0].normal)
    drops = [drop_input(wide, rng, _guided(wide, weak=(2, 3)))[1] for _ in range(200)]
    weak_share = np.mean([d["removed"] == [2, 3] for d in drops if d["cell"] == "normal"])
    assert weak_share > 0.5  # 1 in 6 or 7 if drawn uniformly


def test_weakest_policy_drops_the_weakest_but_explores():
    g = _genotype()
    sharp = replace(_guided(g, weak=(2, 3)), drop="weakest")
    w = np.asarray(removal_weights(g, "normal", sharp, explore=0.2))
    removable = int((w > 0).sum())
    weakest = [e[:2] for e in g.normal.edges].index((2, 3))
    assert w[weakest] == pytest.approx(0.8 + 0.2 / removable)
    assert w.sum() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="'evolution.drop_policy' must be one of"):
        EvolutionConfig(drop_policy="greedy")


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 20), max_inputs=st.integers(1, 4))
@example(seed=15142, steps=16, max_inputs=1)  # used up all tries on add/drop_input once
def test_multi_input_mutations_stay_valid_and_bounded(seed, steps, max_inputs):
    rng = np.random.default_rng(seed)
    g = _genotype()
    probs = (0.2, 0.2, 0.0, 0.3, 0.3)
    for _ in range(steps):
        g, info = mutate(g, rng, Guidance.uniform(OPS), probs=probs, max_inputs=max_inputs)
        validate(g.to_dict())
        for spec in (g.normal, g.reduce):
            assert all(spec.inputs_of(j) for j in {j for _, j, _ in spec.edges})
        if info["kind"] == "add_input":
            assert len(g.cell(info["cell"]).inputs_of(info["added"][1])) <= max_inputs


def test_add_input_refuses_at_the_bound():
    with pytest.raises(ValueError, match="max_inputs=2"):
        add_input(_genotype(), np.random.default_rng(0), Guidance.uniform(OPS), max_inputs=2)


def test_config_refuses_bad_guidance():
    with pytest.raises(ConfigError, match="'evolution.rewire_guidance' must be one of"):
        EvolutionConfig(rewire_guidance="alpha")
    with pytest.raises(ConfigError, match="3 to 8 non-negative weights"):
        EvolutionConfig(mutation_probs=(0.5, 0.5))
    with pytest.raises(ConfigError, match="must train the proxy"):
        EvolutionConfig(rewire_guidance="connections", fitness=FitnessConfig(scorer="zico"))
    assert EvolutionConfig(rewire_guidance="connections").scoring_proxy.connection_weights
    assert not EvolutionConfig().scoring_proxy.connection_weights


@pytest.mark.slow
def test_hybrid_search_records_and_uses_each_candidates_weights(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "search.py"),
        "recipe=sdas_video",
        "stage=hybrid",
        *TINY_DATA,
        "model.steps=3",
        "model.stage_widths=[4,8,8]",
        "search.epochs=2",
        "search.warmup_epochs=1",
        "search.steps_per_epoch=2",
        "evolution.population=3",
        "evolution.cycles=3",
        "evolution.proxy.stage_clips=[16]",
        "evolution.proxy.val_clips=16",
        "evolution.proxy.batch_size=8",
        "evolution.conet_every=0",
        "evolution.mutation_probs=[0.2,0.2,0.0,0.3,0.3]",
        "evolution.max_inputs=3",
        "evolution.rewire_guidance=connections",
        f"out_dir={out}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = [
        json.loads(line) for line in (out / "evolution_history.jsonl").read_text().splitlines()
    ]
    assert history and all("connections" in h for h in history)
    for h in history:
        g = Genotype.from_json(h["genotype"])
        assert [r[:2] for r in h["connections"]["normal"]] == [[i, j] for i, j, _ in g.normal.edges]
        assert any(w != 0.5 for rows in h["connections"].values() for _, _, w in rows)
    Genotype.load(out / "genotype.json")


def test_training_config_builds_a_genotype_net_with_connection_weights():
    from hydra import compose, initialize_config_dir

    from hybridnas.config import TrainRun
    from hybridnas.models import ModelSpec, build_model, model_spec

    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        cfg = compose("train", overrides=["genotype=builtin", "model.connection_weights=true"])
    spec = model_spec(TrainRun.from_cfg(cfg).model, TrainRun.from_cfg(cfg).data, num_classes=10)
    rebuilt = ModelSpec.from_dict(spec.to_dict())  # what a checkpoint stores and reloads
    weights = read_connection_weights(rebuilt.build())
    assert weights and all(w == 0.5 for rows in weights.values() for _, _, w in rows)
    old = {k: v for k, v in spec.to_dict().items() if k != "connection_weights"}
    assert read_connection_weights(ModelSpec.from_dict(old).build()) is None  # older checkpoints
    with pytest.raises(ConfigError, match="needs model.name=genotype"):
        build_model("c3d", num_classes=10, frames=8, size=32, connection_weights=True)
