"""The search schema: ``model.*`` (the space), ``search.*`` (the differentiable stage) and
``evolution.*`` (with its ``fitness``, ``proxy`` and ``faithfulness`` sections), and
``SearchRun``, everything ``tools/search.py`` hands its stages. A stage runs from Python::

    run = SearchRun(search=SearchConfig(epochs=2), model=SpaceConfig(steps=2))
    genotype, _ = run_differentiable(run, DistContext(), Path("runs/x"), tracker)

These dataclasses are the one place a default is declared: recipes/search.yaml and the
recipes only override them. A key a class does not know is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from omegaconf import DictConfig

from hybridnas.config.base import ConfigError, build, check_choices, choices, plain
from hybridnas.config.data import DataConfig

Triple = tuple[int, int, int]
Engine = Literal["none", "ddp", "deepspeed"]
Tracking = Literal["auto", "online", "offline", "none"]
Stage = Literal["hybrid", "differentiable", "evolution"]
ZeroStage = Literal[0, 1, 2, 3]
Method = Literal["sdas", "darts"]
Schedule = Literal["linear", "cosine", "step", "none"]
Confidence = Literal["top1", "margin"]
Select = Literal["alpha", "perturbation"]
AlphaSplit = Literal["auto", "half_train", "search_val"]
Order = Literal[1, 2]
RewireGuidance = Literal["alphas", "connections"]
DropPolicy = Literal["weighted", "weakest"]
LatencyMode = Literal["reject", "penalty"]
LatencySource = Literal["table", "measured"]
RerankScorer = Literal["proxy", "oneshot"]
ACCURACY_SCORERS = choices(RerankScorer)  # the scores that are accuracies in [0, 1]

#: The default search space's op set.
DEFAULT_OPS = (
    "none",
    "skip",
    "max_pool_1x3x3",
    "conv3d_3x3x3",
    "conv2plus1d_3x3x3",
    "p3d_c",
    "dil_temporal_d2",
    "itgm_3x3",
)


@dataclass(frozen=True)
class SpaceConfig:
    """``model.*`` of a search: the op vocabulary, nodes per cell, the macro skeleton (widths
    per stage, cells, stem channels and stride, reduction stride) and PC-DARTS options. Sized
    for 2 CPU cores: a 3-cell supernet of 3-node cells at 16x16 after the stem."""

    op_names: tuple[str, ...] = DEFAULT_OPS
    steps: int = 3  # intermediate nodes per cell (3 -> 9 edges, 4 -> 14 as in DARTS)
    stage_widths: tuple[int, ...] = (4, 8, 16)
    num_cells: int = 3
    stem_channels: int = 8
    stem_stride: Triple = (1, 2, 2)
    reduction_stride: Triple = (1, 2, 2)
    partial_k: int = 1  # PC-DARTS: mixed ops see 1/k of the channels
    edge_norm: bool = False  # PC-DARTS edge normalisation (betas)


@dataclass(frozen=True)
class SearchConfig:
    """``search.*``: the differentiable stage (recipes/search.yaml says what each key does)."""

    method: Method = "sdas"
    epochs: int = 10
    warmup_epochs: int = 1
    arch_warmup_epochs: int = 1
    schedule: Schedule = "linear"
    confidence: Confidence = "top1"
    select: Select = "alpha"
    select_batches: int = 2
    fix_margin: float = 0.0
    decide_at: float = 0.5
    beta_decay: float = 0.0
    alpha_split: AlphaSplit = "auto"
    max_skips: int = 2
    order: Order = 1
    w_lr: float = 0.05
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 0.0003
    grad_clip: float = 5.0
    a_lr: float = 0.003
    a_betas: tuple[float, float] = (0.5, 0.999)
    a_weight_decay: float = 0.001
    steps_per_epoch: int = 24
    channels_last: bool = True
    ckpt_every_steps: int = 0
    log_every_steps: int = 10
    latency_target_ms: float = 2.5
    latency_weight: float = 0.1
    latency_table: str | None = None
    latency_threads: int = 1

    def __post_init__(self) -> None:
        check_choices(self, "search")
        if self.latency_weight < 0:
            raise ConfigError(f"search.latency_weight must be >= 0, got {self.latency_weight}")
        if self.latency_weight > 0 and self.latency_target_ms <= 0:
            raise ConfigError(
                f"search.latency_target_ms must be > 0 with a latency term, got "
                f"{self.latency_target_ms} (search.latency_weight=0 turns the term off)"
            )
        if self.latency_threads < 1:
            raise ConfigError(f"search.latency_threads must be >= 1, got {self.latency_threads}")


@dataclass(frozen=True)
class ProxyConfig:
    """``evolution.proxy.*``: how a trained proxy scores candidates (EcoNAS; see
    ``hybridnas.search.proxy``)."""

    width_scale: float = 0.5
    min_width: int = 4
    size: int = 16
    stage_clips: tuple[int, ...] = (512, 512)
    promote_fraction: float = 0.5
    val_clips: int = 256
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    inherit: bool = True
    connection_weights: bool = False  # set by evolution.rewire_guidance=connections
    # The proxy trains a few dozen steps: at the base lr its connection weights stay within
    # 0.01 of their start (0.5) over 512 clips, at 30x they spread to an SD of 0.07-0.11.
    connection_lr_mult: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_clips", tuple(int(n) for n in self.stage_clips))


@dataclass(frozen=True)
class FitnessConfig:
    """``evolution.fitness.*``. ``scorer``: ``proxy``, a registered scorer name or
    ``ensemble:a+b+...`` (checked against the registry by ``hybridnas.search.fitness``);
    ``rerank_scorer``: ``proxy``, ``oneshot`` or None; ``rerank_top``: how many candidates
    (best cheap fitness first) the rerank scores."""

    scorer: str = "proxy"
    rerank_scorer: RerankScorer | None = "proxy"
    rerank_top: int = 4

    def __post_init__(self) -> None:
        if self.rerank_scorer in ("none", ""):  # the YAML's way of saying no rerank
            object.__setattr__(self, "rerank_scorer", None)
        check_choices(self, "evolution.fitness")
        if not self.components:
            raise ConfigError(f"evolution.fitness.scorer names no scorer: {self.scorer!r}")
        if self.rerank_top < 1:
            raise ConfigError(f"evolution.fitness.rerank_top must be >= 1, got {self.rerank_top}")

    @property
    def components(self) -> tuple[str, ...]:
        """The scorers whose raw values make up the score (one unless an ensemble)."""
        name = self.scorer.removeprefix("ensemble:")
        return tuple(n for n in name.split("+") if n)

    @property
    def rank_based(self) -> bool:
        """True when the score is a normalised rank over the history, not an accuracy."""
        return self.scorer.startswith("ensemble:") or self.scorer not in ACCURACY_SCORERS


MIN_FAITHFULNESS_SAMPLES = 8


@dataclass(frozen=True)
class FaithfulnessConfig:
    """``evolution.faithfulness.*``. ``samples``: candidates retrained (0: no check, else at
    least 8); ``width_scale`` and ``clips``: the reference training's widths and clips."""

    samples: int = 0
    width_scale: float = 1.0
    clips: int = 768

    def __post_init__(self) -> None:
        if self.samples and self.samples < MIN_FAITHFULNESS_SAMPLES:
            raise ConfigError(
                f"evolution.faithfulness.samples must be 0 or >= {MIN_FAITHFULNESS_SAMPLES} (a "
                f"tau over fewer candidates says next to nothing), got {self.samples}"
            )


def _section(cls: type, value: Any, prefix: str) -> Any:
    """A nested section given as a mapping (a YAML node) built into ``cls``."""
    return value if isinstance(value, cls) else build(cls, value, prefix)


@dataclass(frozen=True)
class EvolutionConfig:
    """``evolution.*``: the evolutionary stage (recipes/search.yaml says what each key does),
    with its ``fitness``, ``proxy`` and ``faithfulness`` sections."""

    population: int = 6
    sample_size: int = 3
    cycles: int = 8
    children_per_cycle: int = 2
    mutation_probs: tuple[float, ...] = (0.3, 0.3, 0.1, 0.0, 0.0, 0.1, 0.1, 0.1)
    max_inputs: int = 2
    rewire_guidance: RewireGuidance = "alphas"
    drop_policy: DropPolicy = "weighted"
    explore: float = 0.2
    seed_temperature: float = 1.0
    width_step: float = 0.25
    min_width: int = 4
    max_width: int = 256
    conet_every: int = 4
    conet_trial_stages: int = 2
    macro_frame_scales: tuple[float, ...] = (0.5, 1.0)
    macro_frame_stride: tuple[int, ...] = (1,)
    macro_size_scales: tuple[float, ...] = (0.75, 1.0)
    macro_num_cells: tuple[int, ...] = (3, 5)
    macro_width_mults: tuple[float, ...] = (0.75, 1.25)
    latency_budget_ms: float = 2.5
    latency_mode: LatencyMode = "penalty"
    latency_weight: float = 0.07
    latency_source: LatencySource = "table"
    latency_min_run_s: float = 0.05
    latency_targets: tuple[float, ...] = ()
    family_size: int = 4
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    faithfulness: FaithfulnessConfig = field(default_factory=FaithfulnessConfig)

    def __post_init__(self) -> None:
        for name, cls in (
            ("fitness", FitnessConfig),
            ("proxy", ProxyConfig),
            ("faithfulness", FaithfulnessConfig),
        ):
            object.__setattr__(self, name, _section(cls, getattr(self, name), f"evolution.{name}"))
        check_choices(self, "evolution")
        if self.rewire_guidance == "connections" and "proxy" not in self.fitness.components:
            raise ConfigError(
                "evolution.rewire_guidance=connections reads the connection weights each "
                f"candidate's proxy learns, so evolution.fitness.scorer must train the proxy "
                f"(proxy, or an ensemble with it), got {self.fitness.scorer!r}"
            )
        if not 3 <= len(self.mutation_probs) <= 8 or min(self.mutation_probs) < 0:
            raise ConfigError(
                "evolution.mutation_probs: 3 to 8 non-negative weights for rewire, swap_op, "
                "change_width[, add_input, drop_input, change_clip, change_depth, scale_width], "
                f"got {list(self.mutation_probs)}"
            )
        self._check_macro()
        if self.max_inputs < 1:
            raise ConfigError(f"evolution.max_inputs must be >= 1, got {self.max_inputs}")

    def _check_macro(self) -> None:
        lists = {
            "macro_frame_scales": self.macro_frame_scales,
            "macro_frame_stride": self.macro_frame_stride,
            "macro_size_scales": self.macro_size_scales,
            "macro_width_mults": self.macro_width_mults,
        }
        for name, values in lists.items():
            if not values or min(values) <= 0:
                raise ConfigError(f"evolution.{name} must list positive values, got {list(values)}")
        cells = self.macro_num_cells
        if len(cells) != 2 or not 3 <= cells[0] <= cells[1]:
            raise ConfigError(
                "evolution.macro_num_cells must be [min, max] with 3 <= min <= max, "
                f"got {list(cells)}"
            )
        if any(t <= 0 for t in self.latency_targets):
            raise ConfigError(
                f"evolution.latency_targets must be positive ms, got {list(self.latency_targets)}"
            )
        if self.family_size < 1:
            raise ConfigError(f"evolution.family_size must be >= 1, got {self.family_size}")

    @property
    def scoring_proxy(self) -> ProxyConfig:
        """The proxy config candidates are scored with: with connection-guided rewiring the
        proxy nets learn connection weights."""
        return replace(self.proxy, connection_weights=self.rewire_guidance == "connections")


@dataclass(frozen=True)
class SearchRun:
    """Everything ``tools/search.py`` hands its stages: the run seed, the weight engine,
    whether to resume, the genotype to evolve from (``stage=evolution``), and the sections."""

    seed: int = 0
    engine: Engine = "ddp"
    zero_stage: ZeroStage = 0
    resume: bool = False
    genotype: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: SpaceConfig = field(default_factory=SpaceConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)

    def __post_init__(self) -> None:
        check_choices(self, "")

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> SearchRun:
        """From a composed tools/search.py config (tool-only keys such as ``out_dir`` or
        ``tracking`` stay with the tool)."""
        return cls(
            seed=cfg.seed,
            engine=cfg.engine,
            zero_stage=cfg.zero_stage,
            resume=cfg.resume,
            genotype=cfg.get("genotype"),
            data=DataConfig.from_cfg(cfg.data),
            model=build(SpaceConfig, cfg.model, "model"),
            search=build(SearchConfig, cfg.search, "search"),
            evolution=build(EvolutionConfig, plain(cfg.evolution), "evolution"),
        )
