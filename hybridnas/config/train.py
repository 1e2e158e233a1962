"""The training schema: ``model.*`` (which network and how to scale it), ``train.*`` (the
loop, with its ``patchmix`` section) and ``TrainRun``, everything ``tools/train.py`` hands the
training loop. Defaults are declared here once; recipes/train.yaml and the recipes override."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from hybridnas.config.base import ConfigError, build, check_choices, choices
from hybridnas.config.data import DataConfig
from hybridnas.config.search import Engine, Triple, ZeroStage

Mix = Literal["timm", "patchmix"]
Pattern = Literal["random", "checkerboard", "stripes_t", "stripes_h", "stripes_w"]
Pairing = Literal["random", "other_class", "hardest"]
PATTERNS, PAIRINGS = choices(Pattern), choices(Pairing)
MAX_GRID = 8


def _one_line_error(key: str, message: str) -> ConfigError:
    return ConfigError(f"train.patchmix.{key} {message}")


@dataclass(frozen=True)
class PatchMixConfig:
    """``train.patchmix.*``. ``policy``: a YAML from tools/patchmix_search.py whose grid,
    pattern, pairing (and ``partners``, the hardest class per class) replace the keys here."""

    policy: str | None = None
    grid: tuple[int, int, int] = (2, 2, 2)  # tubes along T, H, W (1-8 each, 2+ in all)
    pattern: Pattern = "random"  # which tubes come from the partner (about half)
    pairing: Pairing = "random"  # hardest: the class the policy's model confuses
    patch_loss: float = 0.5  # weight of the patch-level loss (per feature position)
    partners: tuple[int, ...] | None = None  # set from the policy file, never by hand

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        if self.partners is not None:
            object.__setattr__(self, "partners", tuple(int(p) for p in self.partners))
        check_policy(self.grid, self.pattern, self.pairing, self.partners, self.policy)
        if not 0.0 <= float(self.patch_loss) <= 10.0:
            raise _one_line_error("patch_loss", f"must be in [0, 10], got {self.patch_loss}")

    @classmethod
    def from_node(cls, node: Any) -> PatchMixConfig:
        """From a mapping (a DictConfig too); an unknown key is named; ``policy`` is loaded."""
        d = dict(node.items()) if hasattr(node, "items") else dict(node)
        if d.get("partners") is None:  # the schema's null: only a policy file sets it
            d.pop("partners", None)
        known = {f.name for f in fields(cls)} - {"partners"}
        for key in d:
            if key not in known:
                raise ConfigError(f"unknown config key 'train.patchmix.{key}'")
        if d.get("policy"):
            d |= load_policy(d["policy"])
        return cls(**d)


def check_policy(
    grid: Sequence[int],
    pattern: str,
    pairing: str,
    partners: Sequence[int] | None = None,
    policy: str | None = None,
) -> None:
    """Refuse, in one line naming the key, a grid, pattern or pairing out of range."""
    if len(grid) != 3 or not all(1 <= int(g) <= MAX_GRID for g in grid):
        raise _one_line_error(
            "grid", f"must be 3 tube counts [g_t, g_h, g_w] in 1..{MAX_GRID}, got {list(grid)}"
        )
    if int(grid[0]) * int(grid[1]) * int(grid[2]) < 2:
        raise _one_line_error("grid", f"must have at least 2 tubes, got {list(grid)}")
    if pattern not in PATTERNS:
        raise _one_line_error("pattern", f"must be one of {list(PATTERNS)}, got {pattern!r}")
    axis = {"stripes_t": 0, "stripes_h": 1, "stripes_w": 2}.get(pattern)
    if axis is not None and int(grid[axis]) < 2:
        raise _one_line_error(
            "pattern", f"{pattern} needs at least 2 tubes on its axis, got grid {list(grid)}"
        )
    if pairing not in PAIRINGS:
        raise _one_line_error("pairing", f"must be one of {list(PAIRINGS)}, got {pairing!r}")
    if pairing == "hardest" and partners is None:
        raise _one_line_error(
            "pairing",
            "hardest needs a policy from tools/patchmix_search.py (its confusion partners), "
            f"got policy={policy!r}",
        )


def load_policy(path: str | Path) -> dict[str, Any]:
    """grid, pattern, pairing and partners from a tools/patchmix_search.py YAML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"train.patchmix.policy={path} is not a file (write one with tools/patchmix_search.py)"
        )
    node = OmegaConf.to_container(OmegaConf.load(p), resolve=True)
    pol = node.get("policy", node)
    out = {k: pol[k] for k in ("grid", "pattern", "pairing") if k in pol}
    if pol.get("partners") is not None:
        out["partners"] = tuple(pol["partners"])
    return out


@dataclass(frozen=True)
class ModelConfig:
    """``model.*`` of training: which network, and (``name=genotype``) how to scale the
    genotype (null keeps the genotype's own value; see ``hybridnas.models.resolve_genotype``)."""

    name: str = "genotype"  # genotype | x3d_xs | r2plus1d | c3d | frame2d | ... (hybridnas.models)
    genotype: str | None = None  # a genotype.json, a search run folder, or "builtin"
    num_cells: int | None = None  # scale the genotype: None keeps its own
    stage_widths: tuple[int, ...] | None = None
    stem_channels: int | None = None
    width_mult: float = 1.0  # x the stage widths and stem channels (rounded half up, >= 1)
    stem_stride: Triple | None = None  # e.g. (1, 2, 2): a strided stem for small-clip training
    # before the classifier; None: the network's own (0 for genotype nets, c3d and frame2d;
    # 0.5 for x3d_xs and r2plus1d), so 0 means none
    dropout: float | None = None
    r2plus1d_width: int = 16  # R(2+1)D stem width (64 in the paper; 16 fits a CPU)
    c3d_width: int = 16  # C3D first-stage width w (stages w, 2w, 4w, 8w; 64 in the paper)
    x3d_width_factor: float = 2.0  # X3D width factor (2.0: X3D-XS)
    # X3D / R(2+1)D spatial strides [stem, stage 1-4]; None: [2, 2, 2, 2, 2], made for
    # 160-224 px; [2, 1, 2, 2, 2] keeps a 2x2 map on 32 px clips
    spatial_strides: tuple[int, ...] | None = None
    # genotype nets: each node sums its inputs with a learned sigmoid weight per input, as
    # AssembleNet's nets do (and the proxies of evolution.rewire_guidance=connections)
    connection_weights: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """``train.*``: the training loop."""

    epochs: int = 6
    steps_per_epoch: int = 0  # 0: the whole training shard
    opt: str = "sgd"  # any timm optimizer name (sgd, adamw, lamb, ...)
    lr: float = 0.05
    min_lr: float = 0.0001
    momentum: float = 0.9
    weight_decay: float = 0.0003
    sched: str = "cosine"  # any timm scheduler name, stepped per update
    warmup_epochs: float = 0  # linear warm-up from 1% of lr, in epochs (a fraction: part of one)
    label_smoothing: float = 0.1
    mixup: float = 0.0  # mixup alpha (0: off); done on 5D clips by hybridnas.data.VideoMixup
    cutmix: float = 0.0
    mix: Mix = "timm"  # timm: mixup/cutmix above (off when both are 0) | patchmix (tubes)
    patchmix: PatchMixConfig = field(default_factory=PatchMixConfig)
    ema: bool = True  # keep an EMA of the weights (timm ModelEmaV3); validated and exported
    ema_decay: float = 0.99
    drop_path: float = 0.0  # genotype nets: drop-path rising linearly to this over the epochs
    grad_clip: float = 5.0  # 0: off
    amp: bool = True  # bf16 autocast on GPU (ignored on CPU)
    ckpt_every_steps: int = 0  # also checkpoint mid-epoch every N steps (0: epoch ends only)
    log_every_steps: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.patchmix, PatchMixConfig):  # a mapping from the YAML
            object.__setattr__(self, "patchmix", PatchMixConfig.from_node(self.patchmix))
        check_choices(self, "train")
        if self.mix == "patchmix" and (self.mixup > 0 or self.cutmix > 0):
            raise ConfigError(
                "train.mix=patchmix replaces timm's mixup/cutmix: "
                "set train.mixup=0 and train.cutmix=0"
            )


@dataclass(frozen=True)
class TrainRun:
    """Everything ``tools/train.py`` hands the training loop: the run seed, the weight engine,
    whether to resume, the weights to start from (``init_from``), and the sections."""

    seed: int = 0
    engine: Engine = "ddp"
    zero_stage: ZeroStage = 0
    resume: bool = False
    init_from: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_choices(self, "")

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> TrainRun:
        """From a composed tools/train.py config."""
        return cls(
            seed=cfg.seed,
            engine=cfg.engine,
            zero_stage=cfg.zero_stage,
            resume=cfg.resume,
            init_from=cfg.get("init_from"),
            data=DataConfig.from_cfg(cfg.data),
            model=build(ModelConfig, cfg.model, "model"),
            train=build(TrainConfig, cfg.train, "train"),
        )
