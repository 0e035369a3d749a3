"""Settings of branch and bound (:class:`BabConfig`) and the choice it makes from them first:
input or ReLU splitting (:func:`relu_splitting`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from nnaudit.networks.lower import Lowered


class SplitScore(str, Enum):
    """How input splitting picks the dimension to halve (a ``str`` enum: configuration files and
    saved settings name it by value)."""

    GRADIENT = "gradient"  # the bound's response to each width, by autograd (see branching.sensitivities)
    SMEAR = "smear"        # |a_i| * width_i of the final linear bound; also the gradient score's fallback


@dataclass(frozen=True)
class BabConfig:
    """Settings of branch and bound."""

    batch: int = 512               # sub-domains bounded per torch call (input splitting)
    batch_relu: int = 48           # the same for ReLU splitting (wide layers: memory and time per call)
    max_domains: int = 300_000     # queue cap; past it the answer is unknown (memory stays bounded) ...
    max_queue_bytes: int = 2 << 30  # ... and the same cap in bytes of queued boxes, phases and depths (a ReLU-split
                                    # MNIST sub-domain carries 14 KB; warm starts have their own cap, warm_bytes)
    input_split_dims: int = 32     # split inputs when the network has at most this many, else ReLUs
    z3_max_unstable: int = -1      # input splitting: a sub-domain with at most this many unstable ReLUs goes to Z3
    z3_max_unstable_relu: int = 0  # ReLU splitting: the same threshold
    z3_max_depth: int = 40         # input splitting: any sub-domain split this many times also goes to Z3 ...
    z3_max_depth_relu: int = 10    # ReLU splitting: the same depth (probes too), for sub-domains with at most
    z3_probe_unstable_relu: int = 16  # this many unstable ReLUs (a wide network's encoding outlives a probe's time)
    z3_probe_timeout: float = 1.0  # ... for this long while shallower than z3_final_depth; when Z3 runs out of it,
    z3_depth_step: int = 20        # the sub-domain is split on instead, and the search's Z3 depth rises by this
    z3_final_depth: int = 120      # input splitting: from this depth on, Z3 gets z3_leaf_timeout
    z3_leaf_timeout: float = 60.0  # cap of one Z3 call (also capped by the deadline)
    workers: int = 1               # processes deciding Z3 leaves (1: in this process)
    alpha_steps: int = 0           # input splitting: > 0: alpha-CROWN iterations per batch
    root_alpha_steps: int = 20     # ReLU splitting: > 0: alpha-CROWN iterations for each node's bounds on the whole box,
    root_alpha_size: int = 2_000_000  # ... on networks whose intermediate rows x values to their input are at most this
    relu_alpha_steps: int = 10     # ReLU splitting: > 0: alpha-beta-CROWN iterations per batch (betas: the split constraints)
    prove_tol: float = 1e-7        # a bound proves a row only when above this (absorbs rounding)
    split_score: SplitScore = SplitScore.GRADIENT  # input splitting: see SplitScore (its values are accepted too)
    gradient_every: int = 5        # ... fresh gradients every this many depths (in between, the parent's are reused)
    lp_depth: int = 30             # from this depth on, close multi-row disjuncts by an LP over row combinations
    phase_depth: int = 30          # input splitting: from this depth on, a sub-domain with at most phase_max_unstable
    phase_max_unstable: int = 6    # unstable ReLUs is closed, where it can be, by an LP per phase pattern (0: off)
    share: bool = True             # workers >= 2: one search on that many processes (verify/bab/sharing.py) ...
    share_after: float = 4.0       # ... from this many seconds into the search on
    intermediate: str = "auto"     # input splitting: how pre-activation bounds are computed (see bounds.compute_bounds)
    refalsify_share: float = 0.1   # share of the search's time spent on renewed falsification rounds (0: none)
    refalsify_after: float = 2.0   # seconds of search before the first round (quick instances pay nothing)
    seed: int = 0                  # seed of the renewed rounds (shared-search members get different ones)
    warm_bytes: int = 1 << 30      # ReLU splitting: memory for the queue's warm starts (beyond it, children start cold)
    positive_weight: float | None = None  # ReLU splitting: weight of positive coefficients in the split score
                                          # (None: by the network, see branching.positive_weight)
    max_memory: int | None = None  # memory budget of the search in bytes (verify.limits; None: unlimited)

    def __post_init__(self) -> None:
        from nnaudit.errors import ConfigError

        try:
            object.__setattr__(self, "split_score", SplitScore(self.split_score))
        except ValueError:
            raise ConfigError(f"branch and bound: expected split_score 'gradient' or 'smear', "
                              f"got {self.split_score!r}") from None
        if self.positive_weight is not None and not 0.0 <= self.positive_weight <= 1.0:
            raise ConfigError(f"branch and bound: expected positive_weight in [0, 1] or None, got {self.positive_weight}")
        if self.gradient_every < 1:
            raise ConfigError(f"branch and bound: expected gradient_every >= 1, got {self.gradient_every}")


def root_alpha_steps(low: Lowered, config: BabConfig) -> int:
    """alpha-CROWN iterations on the root's intermediate bounds: none on wide networks, where each
    iteration is a backward pass of every neuron of a layer over everything before it (oval21's
    cifar_wide_kw: 2,048 x 7,168; 20 iterations took 147 s under load and moved one of 413 unstable
    ReLUs, against 9 s for plain CROWN)."""
    sizes = low.source_sizes()
    rows = max((n.pre.size * sum(sizes[:k + 1]) for k, n in enumerate(low.nodes) if set(n.pre.mats) != {0}),
               default=0)
    return config.root_alpha_steps if rows <= config.root_alpha_size else 0


def relu_splitting(low: Lowered, config: BabConfig) -> bool:
    """Whether the search splits ReLUs (more inputs than ``input_split_dims`` and some ReLU) rather than inputs."""
    return low.input_size > config.input_split_dims and any(n.kind == "relu" for n in low.nodes)
