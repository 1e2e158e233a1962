"""Section 1b: the four differentiable methods over a longer schedule (SDAS's fixing has room
to pay off)."""

from __future__ import annotations

from studies.harness import Results, measure_search
from studies.markdown import ReportInput, fmt, pyplot, save_figure, short, table
from studies.modes import COST, METHODS, differentiable_overrides


def run(R: Results, m: dict) -> None:
    for name, (recipe, label) in METHODS.items():
        measure_search(
            R,
            f"long_{name}",
            recipe,
            [*differentiable_overrides(m, m["long_epochs"]), "seed=0"],
            {
                "section": "long",
                "method": name,
                "label": label,
                "seed": 0,
                "epochs": m["long_epochs"],
            },
        )


def _figure(r: ReportInput, longs: dict, epochs: int) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for k, v in longs.items():
        ax.plot(range(len(v["epoch_s"])), v["epoch_s"], marker=".", label=COST.get(k, k))
    ax.set_xlabel("search epoch")
    ax.set_ylabel("seconds per epoch")
    ax.set_title(f"Time per search epoch, {epochs}-epoch schedule")
    save_figure(fig, ax, r.dst / "epoch_times_long.png")


def report(r: ReportInput) -> list[str]:
    L = ["### Over a longer schedule\n"]
    longs = {v["method"]: v for v in r.section("long") if v.get("search_s")}
    if not longs:
        return [*L, "Not measured in this run.\n"]
    ld = longs.get("darts", {})
    ep = next(iter(longs.values())).get("epochs")
    rows = [
        [
            COST[k],
            fmt(v["search_s"], 1),
            fmt(v["search_s"] / ld["search_s"], 2) if ld.get("search_s") else "n/a",
            fmt(v.get("cpu_s"), 1),
            fmt(v["maxrss_mb"], 0),
            fmt(v.get("val_acc"), 3),
        ]
        for k, v in longs.items()
        if k in COST
    ]
    L.append(
        f"The same four runs with `search.epochs={ep}` (one run each, same space and "
        f"steps per epoch): SDAS fixes edges linearly from the warm-up to the last epoch, "
        f"so the longer the search, the larger the share of cheap epochs.\n"
    )
    head = ["method", "search s", "x DARTS time", "CPU s", "peak RSS MB", "final search-val acc"]
    L.append(table(head, rows))
    if "sdas" in longs and ld.get("search_s"):
        L.append(
            f"\n**SDAS / DARTS total search time over {ep} epochs: "
            f"{longs['sdas']['search_s'] / ld['search_s']:.2f}**.\n"
        )
    _figure(r, longs, ep)
    L.append("![time per epoch, long](epoch_times_long.png)\n")
    L.append(
        f"Command: `{short(longs.get('sdas', ld).get('command', ''), r.out)}` (and the other "
        f"three recipes).\n"
    )
    return L
