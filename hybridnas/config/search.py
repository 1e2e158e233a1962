"""The search schema: ``model.*`` (the space), ``search.*`` (the differentiable stage) and
``evolution.*`` (with its ``fitness``, ``proxy`` and ``faithfulness`` sections), and
``SearchRun``, everything ``tools/search.py`` hands its stages. A stage runs from Python::

    run = SearchRun(search=SearchConfig(epochs=2), model=SpaceConfig(steps=2))
    genotype, _ = run_differentiable(run, DistContext(), Path("runs/x"), tracker)

These dataclasses are the one place a default is declared (recipes/search.yaml names them
through the ConfigStore, config/store.py); the recipes only override them. A key a class does
not know is refused by name.
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
AccuracyScorer = Literal["proxy", "oneshot"]  # the scores that are accuracies in [0, 1]
ACCURACY_SCORERS = choices(AccuracyScorer)
RerankScorer = Literal[AccuracyScorer, "none"]  # none (or null): no rerank

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
class NSEConfig:
    """``search.nse.*``: neural search-space evolution (search/differentiable/nse.py): rounds
    of the differentiable search, each over the kept ops plus a fresh batch from the pool.
    Which pool ops exist is checked against the op registry where the search starts
    (``differentiable.nse.check_pool``); this schema imports no registry."""

    rounds: int = 0  # rounds of the supernet search (0: one plain search over model.op_names)
    pool: tuple[str, ...] | None = None  # ops the rounds draw from (None: every registered op)
    batch: int = 4  # fresh ops a round adds to the kept ones
    keep: int = 4  # ops a round keeps (their trained weights go into the next round)
    multi_branch_k: int = 1  # an edge whose alphas do not separate keeps up to k ops

    def __post_init__(self) -> None:
        if self.pool is not None:
            object.__setattr__(self, "pool", tuple(self.pool))
        for key, low, high in (("rounds", 0, 32), ("batch", 1, 64), ("keep", 1, 64),
                               ("multi_branch_k", 1, 4)):  # fmt: skip
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"search.nse.{key} must be an integer in [{low}, {high}], got {value!r}"
                )
        if self.pool is not None and len(set(self.pool)) != len(self.pool):
            raise ConfigError(f"search.nse.pool lists an op twice: {list(self.pool)}")
        if self.multi_branch_k > 1 and self.rounds == 0:
            raise ConfigError("search.nse.multi_branch_k > 1 needs search.nse.rounds >= 1")

    @property
    def has_none(self) -> bool:
        """Whether every round's supernet holds ``none`` (the pool has it)."""
        return self.pool is None or "none" in self.pool


@dataclass(frozen=True)
class SearchConfig:
    """``search.*``: the differentiable stage."""

    method: Method = "sdas"  # sdas (scheduled fixing) | darts (all ops to the end)
    epochs: int = 10
    warmup_epochs: int = 1  # SDAS: epochs before any edge is fixed
    arch_warmup_epochs: int = 1  # epochs of weight-only training before alpha steps start
    schedule: Schedule = "linear"  # how the share of fixed edges rises (none: plain DARTS)
    confidence: Confidence = "top1"  # which free edge SDAS fixes next: top-1 alpha or margin
    # the op a fixed edge keeps: the top alpha, or (DARTS-PT) the op whose masking lowers
    # search-val accuracy most (costs forwards, counted as search time)
    select: Select = "alpha"
    select_batches: int = 2  # select=perturbation: alpha-split batches per rank per measurement
    # > 0: after warmup_epochs, also fix mid-epoch every edge whose top-1 minus top-2 alpha
    # margin reaches this (0: fix at epoch ends only)
    fix_margin: float = 0.0
    # SDAS: share of the epochs between warm-up and the last one over which edges are fixed
    # (1.0: all decided one epoch before the last)
    decide_at: float = 0.5
    beta_decay: float = 0.0  # > 0: beta-DARTS regulariser on the alphas (x mean logsumexp)
    # half_train (DARTS: weights on one half of train, alphas on the other) | search_val |
    # auto (half_train on disk, search_val on the built-in data)
    alpha_split: AlphaSplit = "auto"
    max_skips: int = 2  # cap on skip connections per cell type
    order: Order = 1  # 1: first-order DARTS, 2: unrolled second order
    w_lr: float = 0.05  # DARTS: 0.025 at batch 64; tiny CPU supernets learn faster at 0.05
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 0.0003
    grad_clip: float = 5.0
    a_lr: float = 0.003  # DARTS: 3e-4 over ~50 epochs; a ~200-step CPU search needs 10x
    a_betas: tuple[float, float] = (0.5, 0.999)
    a_weight_decay: float = 0.001
    steps_per_epoch: int = 24  # batches per epoch (0: the whole shard)
    channels_last: bool = True  # channels-last-3d clips: faster 3D convs on CPU and GPU
    ckpt_every_steps: int = 0  # also checkpoint mid-epoch every N steps (0: epoch ends only)
    log_every_steps: int = 10
    # Latency-aware search (FBNet / ProxylessNAS): the architecture loss adds latency_weight x
    # max(0, log(E[ms] / latency_target_ms)), E[ms] the expected time per clip of the mixed
    # ops from a latency table measured once per device (tools/latency.py build; built on
    # first use), so the same seed gives the same genotype byte for byte. latency_weight 0: off.
    latency_target_ms: float = 2.5
    latency_weight: float = 0.1
    latency_table: str | None = None  # a table JSON; None: this device's cached one
    latency_threads: int = 1  # threads the table is measured at (the time it predicts)
    nse: NSEConfig = field(default_factory=NSEConfig)

    def __post_init__(self) -> None:
        check_choices(self, "search")
        object.__setattr__(self, "nse", _section(NSEConfig, self.nse, "search.nse"))
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

    width_scale: float = 0.5  # proxy widths = round(width x scale), at least min_width
    min_width: int = 4
    size: int = 16  # proxy clip resolution (frames kept)
    # training clips per stage: the cheap score is stage 1's accuracy; the proxy rerank
    # trains its candidates through every stage, the top promote_fraction going on to each
    stage_clips: tuple[int, ...] = (512, 512)
    promote_fraction: float = 0.5
    val_clips: int = 256  # fixed search_val subset the proxy accuracy is measured on
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    inherit: bool = True  # start proxy nets from the supernet's weights (channel slices)
    connection_weights: bool = False  # set by evolution.rewire_guidance=connections
    # rewire_guidance=connections: lr multiplier of the connection weights (at 1x they stay
    # within 0.01 of their start, 0.5, over a proxy's few dozen steps)
    connection_lr_mult: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_clips", tuple(int(n) for n in self.stage_clips))


@dataclass(frozen=True)
class FitnessConfig:
    """``evolution.fitness.*``. ``scorer``: ``proxy``, a registered scorer name or
    ``ensemble:a+b+...`` (checked against the registry by ``hybridnas.search.fitness``);
    ``rerank_scorer``: ``proxy``, ``oneshot`` or None; ``rerank_top``: how many candidates
    (best cheap fitness first) the rerank scores."""

    # cheap score of every candidate: proxy (trained, stage 1 of proxy.stage_clips) | a
    # scorer of hybridnas.search.scorers (synflow, snip, grad_norm, naswot, zico, st_entropy,
    # temporal_sensitivity, naswot_motion, params, flops, oneshot, proxy_1cycle,
    # proxy_1cycle_x2) | ensemble:<a>+<b>+... (mean rank); non-accuracy scores become ranks
    scorer: str = "proxy"
    # expensive score of the best rerank_top at the end, which alone picks genotype.json:
    # proxy (all stages, successive halving) | oneshot | none
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

    samples: int = 0  # 8 x 768 full-width clips take minutes on 2 cores, hence off
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
    """``evolution.*``: the evolutionary stage, with its ``fitness``, ``proxy`` and
    ``faithfulness`` sections."""

    population: int = 6  # FIFO population size P (aging evolution)
    sample_size: int = 3  # tournament size S
    cycles: int = 8  # cycles after the seed population
    children_per_cycle: int = 2  # children per cycle, evaluated together (split over ranks)
    # rewire an input, swap an op, change a stage width[, add an input, drop an input, change
    # the clip (frames, frame stride or size), change the depth, scale every width]
    mutation_probs: tuple[float, ...] = (0.3, 0.3, 0.1, 0.0, 0.0, 0.1, 0.1, 0.1)
    max_inputs: int = 2  # the most inputs add_input gives a node
    # which connections rewire/drop_input drop and which new ones they try: alphas (the
    # supernet's) | connections (AssembleNet: each candidate's proxy learns a weight per
    # connection; its children drop its weak ones more often)
    rewire_guidance: RewireGuidance = "alphas"
    # how rewire/drop_input pick the connection to remove: weighted (drawn with weight
    # 1 - strength) | weakest (the weakest, but with probability `explore` a uniform one)
    drop_policy: DropPolicy = "weighted"
    explore: float = 0.2  # share of uniform probability mixed into guided draws
    seed_temperature: float = 1.0  # sampling seeds from the alphas: weights ** (1 / T)
    width_step: float = 0.25  # change_width: x(1 +- width_step)
    min_width: int = 4  # stage width bounds for mutations and CONet
    max_width: int = 256
    conet_every: int = 4  # CONet width trial on the best every N cycles (0: never)
    conet_trial_stages: int = 2  # proxy stages in a CONet trial (rank slope over them)
    # Macro axes (TinyVideoNets / X3D) change_clip, change_depth and scale_width draw from:
    macro_frame_scales: tuple[float, ...] = (0.5, 1.0)  # clip frames: data.frames x these
    # every n-th frame of the data's sampling ([1, 2] on video; the built-in digits cannot
    # render 16-frame clips at 12 px on a 32 px canvas)
    macro_frame_stride: tuple[int, ...] = (1,)
    macro_size_scales: tuple[float, ...] = (0.75, 1.0)  # clip side: data.size x these
    macro_num_cells: tuple[int, ...] = (3, 5)  # [min, max] cells
    macro_width_mults: tuple[float, ...] = (0.75, 1.25)  # scale_width: widths and stem x these
    latency_budget_ms: float = 2.5  # predicted time per clip (one thread); 0: none
    latency_mode: LatencyMode = "penalty"  # reject | penalty (MnasNet soft constraint)
    latency_weight: float = 0.07
    latency_source: LatencySource = "table"  # table (per-device, deterministic) | measured
    latency_min_run_s: float = 0.05  # latency_source=measured: benchmark time per candidate
    # K > 0 targets (ms): family/<k>.json, the best candidate under each (else the K-point
    # Pareto front of score vs predicted ms), family.png
    latency_targets: tuple[float, ...] = ()
    family_size: int = 4  # without latency_targets: how many front members family/ holds
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
