"""Section 3 (report only): every trained model on the accuracy/latency plane, with its Pareto
front; and section 5 (report only): the GPU figures of the same models."""

from __future__ import annotations

from studies.markdown import ReportInput, fmt, pyplot, save_figure, table
from studies.modes import BASELINES, QUALITY

LABELS = {**QUALITY, **BASELINES}


def trained_points(r: ReportInput) -> list[dict]:
    return [v for v in r.section("train", ok=False) if "test_top1" in v]


def _figure(r: ReportInput, pts: list[dict], P: list[dict], front: list[int]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    markers = dict(zip(LABELS, "o^sDvPX*h", strict=False))
    for mth in LABELS:
        sel = [p for p in pts if p["method"] == mth]
        if sel:
            x, y = [p["cpu_ms_per_clip"] for p in sel], [p["test_top1"] for p in sel]
            ax.scatter(x, y, marker=markers[mth], s=45, label=LABELS[mth])
    fr = sorted((P[i] for i in front), key=lambda p: p["latency_ms"])
    x, y = [p["latency_ms"] for p in fr], [p["accuracy"] for p in fr]
    ax.plot(x, y, "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("CPU ms per clip (batch 1, log scale)")
    ax.set_ylabel("test top-1")
    ax.set_title("Every trained model: accuracy vs latency")
    save_figure(fig, ax, r.dst / "pareto.png", legend_size=7)


def report(r: ReportInput) -> list[str]:
    L = ["## 3. The accuracy/latency plane\n"]
    pts = trained_points(r)
    if not pts:
        return [*L, "Not measured in this run.\n"]
    from hybridnas.search.evolution.pareto import pareto_front

    P = [{"accuracy": p["test_top1"], "latency_ms": p["cpu_ms_per_clip"]} for p in pts]
    front = pareto_front(P, maximize=["accuracy"], minimize=["latency_ms"])
    _figure(r, pts, P, front)
    on_front = ", ".join(
        f"{LABELS.get(pts[i]['method'], pts[i]['method'])} (seed {pts[i]['seed']}, "
        f"{fmt(pts[i]['test_top1'], 3)}, {fmt(pts[i]['cpu_ms_per_clip'], 2)} ms)"
        for i in front
    )
    L.append(
        "Every genotype found above (each seed) and every baseline, test top-1 against CPU "
        "time per clip; the dashed line is the Pareto front (`hybridnas.search.evolution.pareto."
        "pareto_front`, maximise accuracy, minimise ms). On the front: " + on_front + ".\n"
    )
    L.append("![accuracy/latency plane](pareto.png)\n")
    return L


def report_gpu(r: ReportInput) -> list[str]:
    L = ["## 5. GPU figures\n"]
    gpu = r.meta.get("machine", {}).get("gpu")
    if gpu:
        pts = trained_points(r)
        rows = [[p["method"], str(p["seed"]), fmt(p.get("gpu_ms_per_clip"), 3)] for p in pts]
        L.append(f"GPU: {gpu}.\n")
        L.append(table(["model", "seed", "GPU ms/clip"], rows))
        return L
    L.append(
        "**Not measured**: this run had no CUDA device. On a machine with one, the same "
        "command records GPU ms per clip for every trained model (`gpu_ms_per_clip`) and the "
        "searches run on the GPU, so section 1 then gives GPU seconds per epoch "
        "(clips per second in search = steps x batch / epoch seconds).\n"
    )
    return L
