"""The settings of one search, and the strategies that are presets of them.

Every MENAS ingredient is a switch, so the ablations run from the same code:

    strategy    tickets  regrow  weight sharing  keep-largest  BN shrink  Early-Bird  survivors (parents)
    menas       yes      yes     no              0.2           0.5        yes         top-K + largest, (mu + lambda)
                                                                                      (tournament)
    evolution   no       no      no              0             0          no          the youngest, regularized
                                                                                      evolution (tournament)
    random      no       no      no              0             0          no          none: every child is sampled

Whatever the switches, a trial's fitness is the same measurement: ``epochs`` epochs of training from a
fresh initialization with one fixed recipe, then the validation score (see ``trial.py``). With tickets,
the network is cut to its ticket inside that training, where Early-Bird sees its channel mask settle.
Regrow (with tickets) widens a ticket's child back: every hidden width times one factor, up to
1 / (1 - prune ratio) and within the child's budget (``space/budget.py``, MorphNet's expand step). The
child keeps the per-block allocation its parent's ticket learned, without the population slimming
generation after generation under a size limit. Weight sharing (``--weight-sharing``, off in every
preset) starts a child from its parents' weights instead: it makes fitness depend on the lineage (an
earlier design with it on found winners that lost to plain evolution's when both were retrained from
scratch), and is kept to measure that.

Steer (``--steer``, off in every preset, with tickets off) keeps the ticket as information rather than
as the candidate: the trial trains its dense child all ``epochs`` (with the calibrated BN shrink over
the first ``mask_epochs``), is scored as it is, and records the ticket its |gamma| would give; a mutated
child's blocks then grow where that ticket keeps its parent's channels and shrink where it prunes them
(``evolution.steer``). Unless ``bn_shrink`` is given, steering brings MENAS's. ``steer_keep_cost``
(``--steer-keep-cost``) holds a steered child to the params and MACs its mutation gave it.

Median stop (``--median-stop``, off in every preset, with tickets off) is the median stopping rule of
Google Vizier (Golovin et al. 2017) at one rung: a child whose validation accuracy after
``median_stop_epoch`` epochs is under the median of its parents' (the population it was bred from) at
that epoch stops there, and its fitness is that score. Architectures unlikely to win cost part of a
trial, so more of them fit a wall-clock budget; a trial that goes on trains and scores exactly as it
would without the rule. (Measured against every earlier generation instead, the median lags the
population: a search stopped 4 of its 17 trials and ran no more trials than without the rule.)

A switch given explicitly (``--no-tickets``, ``--keep-largest 0``) overrides the strategy's preset.
The config is saved in the run folder; ``--resume`` reads it back, so a resumed run cannot silently
change what it searches.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from menas_zoo.errors import MenasError
from menas_zoo.space.budget import Budget
from menas_zoo.space.sampling import SearchProfile, get_profile

STRATEGIES = ("menas", "evolution", "random")
#: Preset of each strategy: its switches.
PRESETS: dict[str, dict[str, Any]] = {
    "menas": {"tickets": True, "regrow": True, "weight_sharing": False, "keep_largest": 0.2, "bn_shrink": 0.5,
              "early_bird": True, "steer": False, "median_stop": False},
    "evolution": {"tickets": False, "regrow": False, "weight_sharing": False, "keep_largest": 0.0, "bn_shrink": 0.0,
                  "early_bird": False, "steer": False, "median_stop": False},
    "random": {"tickets": False, "regrow": False, "weight_sharing": False, "keep_largest": 0.0, "bn_shrink": 0.0,
               "early_bird": False, "steer": False, "median_stop": False},
}
#: Settings that may change when a run is resumed (they do not change what is searched).
RESUMABLE_OVERRIDES = ("budget_minutes", "device")


@dataclass
class SearchConfig:
    strategy: str = "menas"
    profile: SearchProfile = field(default_factory=lambda: get_profile("small"))
    population: int = 8
    generations: int = 5  # generations after the initial random population
    epochs: int = 4  # the fitness proxy: epochs of training from a fresh initialization, the same for every trial
    mask_epochs: int = 3  # with tickets: the dense epochs before the ticket is cut at the latest (Early-Bird
    #                       usually cuts it sooner); at most epochs - 1, so the ticket always trains
    # -- switches (None: the strategy's preset) --
    tickets: bool | None = None
    regrow: bool | None = None  # with tickets: a ticket's child widens its hidden widths back (see above)
    weight_sharing: bool | None = None
    keep_largest: float | None = None  # fraction of the population kept as the largest models by MACs
    bn_l1: float | None = None  # an L1 term in the loss (network slimming as published); 0 by default
    bn_shrink: float | None = None  # calibrated sparsity of the dense epochs: total |gamma| shrink (train.py)
    early_bird: bool | None = None
    steer: bool | None = None  # tickets off: a child's widths follow its parent's ticket (see above)
    steer_keep_cost: bool = False  # steering moves width between a child's blocks and adds none
    median_stop: bool | None = None  # tickets off: a trial under the median at median_stop_epoch stops there
    median_stop_epoch: int = 2
    # -- lottery ticket --
    prune_ratio: float = 0.2  # global fraction of hidden channels pruned by |gamma| (at least)
    max_prune_ratio: float = 0.6  # prune to fit: a ticket over a cost limit is pruned further, up to this
    min_channels: int = 8
    channel_multiple: int = 8  # kept counts rounded to multiples of this (8: fast in ORT and on tensor cores)
    ticket_allocation: str = "global"  # one |gamma| threshold over all blocks, or "uniform": the same share of each
    eb_window: int = 2  # Early-Bird: masks of the last N epochs ...
    eb_threshold: float = 0.1  # ... all within this normalized Hamming distance of the newest
    # -- variation --
    crossover_rate: float = 0.25
    mutation_rate: float = 0.15  # per-gene resample probability
    tournament: int = 0  # parents' tournament size (both evolutionary strategies); 0 = max(2, population // 4)
    # -- fitness --
    max_macs: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None
    penalty: float | None = None  # None: hard limit; w: MnasNet-style acc x (cost/limit)^-w over the limit
    # -- data and training --
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    val_size: int = 5000
    train_subset: int | None = None
    batch_size: int = 128
    # Trials are short (tens to hundreds of steps): AdamW learns in far fewer steps than SGD with warm-up.
    optimizer: str = "adamw"
    lr: float | None = None  # None: the optimizer's default in TrainConfig
    seed: int = 0
    device: str = "auto"
    budget_minutes: float | None = None
    # -- set from the data when the run starts --
    in_chans: int | None = None  # None: the data's (an image folder is read as RGB); 1 or 3 picks an image folder's
    num_classes: int = 10
    resolution: int | None = None  # None: the profile's

    def __post_init__(self) -> None:
        if isinstance(self.profile, str):
            self.profile = get_profile(self.profile)
        if self.strategy not in STRATEGIES:
            raise MenasError(f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.steer and self.bn_shrink is None:  # steering ranks channels by |gamma|: MENAS's sparsity
            self.bn_shrink = PRESETS["menas"]["bn_shrink"]
        for key, value in PRESETS[self.strategy].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.bn_l1 is None:
            self.bn_l1 = 0.0
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.population >= 2, "--population must be at least 2"),
            (0 <= self.tournament <= self.population, "--tournament must be in [0, --population]"),
            (self.generations >= 0, "--generations must be >= 0"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.mask_epochs >= 1, "--mask-epochs must be at least 1"),
            (0.0 <= self.keep_largest < 1.0, "--keep-largest must be in [0, 1)"),
            (0.0 < self.prune_ratio < 1.0, f"--prune-ratio must be in (0, 1), got {self.prune_ratio:g}"),
            (self.prune_ratio <= self.max_prune_ratio < 1.0,
             "--max-prune-ratio must be in [--prune-ratio, 1)"),
            (self.eb_window >= 2, f"--eb-window must be at least 2 epochs (it compares masks), got {self.eb_window}"),
            (0.0 < self.eb_threshold < 1.0, f"--eb-threshold must be in (0, 1), got {self.eb_threshold:g}"),
            (self.bn_shrink >= 0.0 and self.bn_l1 >= 0.0, "BN sparsity must be >= 0"),
            (not (self.steer and self.tickets), "--steer steers dense candidates by their tickets: add --no-tickets"),
            (self.steer or not self.steer_keep_cost, "--steer-keep-cost keeps a steered child's cost: add --steer"),
            (not (self.median_stop and self.tickets), "--median-stop stops dense trials: add --no-tickets"),
            (1 <= self.median_stop_epoch < self.epochs or not self.median_stop,
             f"--median-stop-epoch must be in [1, --epochs), got {self.median_stop_epoch}"),
            (self.budget_minutes is None or self.budget_minutes > 0, "--budget-minutes must be positive"),
            (self.train_subset is None or self.train_subset > 0, "--train-subset must be positive"),
            (self.penalty is None or self.penalty > 0, "--penalty must be positive (e.g. 0.07)"),
            (self.in_chans in (None, 1, 3), f"--in-chans must be 1 (grayscale) or 3 (RGB), got {self.in_chans}"),
            (self.ticket_allocation in ("global", "uniform"),  # slim.ALLOCATIONS, without importing torch here
             f"--ticket-allocation must be global or uniform, got {self.ticket_allocation!r}"),
        ]
        for limit in ("max_macs", "max_params", "max_latency_ms"):
            value = getattr(self, limit)
            checks.append((value is None or value > 0, f"--{limit.replace('_', '-')} must be positive"))
        for ok, message in checks:
            if not ok:
                raise MenasError(message)

    def budget(self) -> Budget:
        """The hard params/MACs limits every individual (ticket or child) must meet."""
        return Budget(self.max_params, self.max_macs) if self.penalty is None else Budget()

    def child_budget(self) -> Budget:
        """What a child may cost before its ticket: with tickets, the limit over (1 - prune ratio), since
        the ticket is pruned until it fits (prune to fit); without, the limit itself."""
        budget = self.budget()
        if not (budget and self.tickets):
            return budget
        scale = self.unprune_factor
        return Budget(*(int(v * scale) if v else None for v in (budget.max_params, budget.max_macs)))

    @property
    def unprune_factor(self) -> float:
        """1 / (1 - prune ratio): what a ticket's pruning takes back. A child may cost this much over the
        limit before its ticket is cut, and regrow widens a ticket's child by at most this factor."""
        return 1.0 / (1.0 - self.prune_ratio)

    def genotype_fields(self) -> dict[str, Any]:
        """What every genotype of this search has in common, its input and classes (from the data once the
        run has started; before that, Fashion-MNIST's channels)."""
        return {"in_chans": self.in_chans or 1, "num_classes": self.num_classes, "resolution": self.resolution}

    @property
    def dense_epochs(self) -> int:
        """The cap of a trial's dense phase: ``mask_epochs``, leaving the ticket at least one epoch."""
        return max(1, min(self.mask_epochs, self.epochs - 1))

    @property
    def tournament_size(self) -> int:
        return self.tournament or max(2, self.population // 4)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # the profile becomes a dict: a custom profile survives a resume
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        data = dict(data)
        profile = data.get("profile")
        if isinstance(profile, dict):
            data["profile"] = SearchProfile.from_dict(profile)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise MenasError(f"search config has unknown settings {sorted(unknown)} (written by a newer menas-zoo?)")
        return cls(**data)


def derive_seed(seed: int, *tags: Any) -> int:
    """A 31-bit seed from ``seed`` and tags, e.g. ``(seed, "trial", 12)``: every trial and generation gets
    its own random stream, so a resumed run draws exactly what an uninterrupted one would."""
    digest = hashlib.sha256(repr((seed, *tags)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
