"""Branch and bound over sub-domains, with Z3 deciding the small leaves.

Step 3 of the verifier's pipeline (:mod:`nnaudit.verify.engine`), after falsification and the
bounds of the whole box.  One module per concept:

- :mod:`.config`: :class:`BabConfig` and the choice of input or ReLU splitting;
- :mod:`.queue`: the queued sub-domains (:class:`Chunk`) and their caps;
- :mod:`.closing`: what one batch's bounds settle (refuted disjuncts, unstable ReLUs);
- :mod:`.branching`: where a sub-domain is split;
- :mod:`.leaves`: the sub-domains Z3 decides, here or on worker processes;
- :mod:`.refalsify`: falsification rounds during the search;
- :mod:`.search`: one search loop (:class:`Search`);
- :mod:`.sharing`: one search on several processes that share their sub-domains;
- :mod:`.outcome`: what a run concluded (:class:`BabOutcome`).

The history of the heuristics (measurements, and the experiments that lost) is in
``docs/verifier.md``.
"""

from __future__ import annotations

from typing import Any

from nnaudit._lazy import lazy_getattr
from nnaudit.networks.lower import Lowered
from nnaudit.verify.bab.config import BabConfig, SplitScore, relu_splitting
from nnaudit.verify.bab.outcome import BabOutcome
from nnaudit.verify.bab.queue import Chunk
from nnaudit.verify.spec import Box, Region

# the modules that import torch are imported on first use, so that ``BabConfig`` (and the engine's
# ``VerifyConfig``) cost no torch import on the dense route (verify/dense_bab.py)
__getattr__ = lazy_getattr(__name__, {"LeafResult": "leaves", "LeafTask": "leaves", "decide_leaf": "leaves",
                                      "Search": "search"})

__all__ = ["BabConfig", "BabOutcome", "Chunk", "LeafResult", "LeafTask", "Search", "SplitScore", "decide_leaf",
           "relu_splitting", "run_bab"]


def run_bab(low: Lowered, network: Any, ort: Any, box: Box, region: Region, config: BabConfig,
            deadline: float, progress: Any = None) -> BabOutcome:
    """Branch and bound on one (box, region) case until decided, capped or out of time.

    With at least two workers and ``config.share``, one search runs on that many processes
    that share their sub-domains (:mod:`~nnaudit.verify.bab.sharing`).  ``progress(done,
    left)`` is called after each batch."""
    from nnaudit.verify.bab import sharing
    from nnaudit.verify.bab.search import Search

    if sharing.applies(config):
        return sharing.run_shared(low, network, ort, box, region, config, deadline, progress)
    return Search(low, network, ort, box, region, config, deadline, progress).run()
