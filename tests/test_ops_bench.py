"""The ops benchmark: side-by-side import of another commit, interleaved timing, the report."""

import json

import torch
from studies.ops_bench import OpShape, bench_ops, interleaved_ms, package_at
from studies.ops_report import ops_section

from hybridnas.ops import create_op


def test_package_at_builds_the_old_code_beside_this_one():
    import hybridnas.ops as current

    with package_at("HEAD") as load:
        old_ops = load("ops")
        assert old_ops is not current and old_ops.__file__ != current.__file__
        torch.manual_seed(0)
        old = old_ops.create_op("conv3d_3x3x3", 4, 4, (1, 1, 1))
    import hybridnas.ops as after

    assert after is current  # this package is back
    new = create_op("conv3d_3x3x3", 4, 4, (1, 1, 1))
    new.load_state_dict(old.state_dict())
    x = torch.randn(1, 4, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(new.eval()(x), old.eval()(x), atol=1e-5)


def test_interleaved_ms_times_every_job():
    calls = {"a": 0, "b": 0}

    def job(name):
        def run():
            calls[name] += 1

        return run

    ms = interleaved_ms({"a": job("a"), "b": job("b")}, rounds=3, block_s=0.0)
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    assert calls["a"] >= 3 + 3 and calls["b"] >= 3 + 3  # warm-up, calibration, rounds


def test_bench_rows_and_report(tmp_path):
    shape = OpShape("normal", 4, (1, 1, 1), (4, 4, 8, 8))
    rows = bench_ops(["conv3d_3x3x3", "max_pool_1x3x3"], [shape], threads=1, batch=2, rounds=1)
    assert {(r["op"], r["mode"]) for r in rows} == {
        (op, mode)
        for op in ("conv3d_3x3x3", "max_pool_1x3x3")
        for mode in ("forward_b1", "forward", "train")
    }
    costs = {
        f"{op}|{shape.label}": {"mflops": m, "params": p}
        for op, m, p in (("conv3d_3x3x3", 1.0, 10), ("max_pool_1x3x3", 0.0, 0))
    }
    doc = {"against": None, "batch": 2, "rounds": 1, "shapes": [shape.label], "costs": costs}
    doc |= {"rows": rows, "networks": [], "genotype": None, "load": [0.0, 0.0, 0.0]}
    (tmp_path / "ops.json").write_text(json.dumps(doc))
    text = "\n".join(ops_section(tmp_path))
    assert "## Ops" in text and "| max_pool_1x3x3 | 0.00 | 0 |" in text
    assert "| conv3d_3x3x3 | 1.00 | 10 | " in text and "1.00/MF" in text
