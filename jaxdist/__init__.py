"""jaxdist: distributed and decentralized training algorithms as pure JAX functions.

    import jaxdist, optax
    algorithm = jaxdist.local_sgd(loss_fn, optax.sgd, learning_rate=0.1, local_steps=4)
    data = jaxdist.data.sampled({"input": x, "label": y}, num_workers=8, batch_size=32)
    result = jaxdist.train(algorithm, params, data=data, num_steps=1000)

Algorithms (`local_sgd`, `choco_sgd`, ...) are built from plain arguments and a loss
`loss_fn(params, model_state, batch, rng) -> (loss, (model_state, metrics))`; `train` and
`Runner` run them for K workers, simulated on one device or over a mesh (`Simulated`, `Sharded`,
`MultiProcess`).
"""

from jaxdist import (
    algorithms,
    asynchrony,
    batching,
    communication,
    core,
    data,
    federated,
    models,
    objectives,
    optim,
    search,
    training,
)
from jaxdist.algorithms import extrapolation
from jaxdist.algorithms.compressed_sgd import compressed_sgd
from jaxdist.algorithms.decentralized import (
    ConsensusControl,
    choco_sgd,
    d2,
    d2_plus,
    dcd_psgd,
    deepsqueeze,
    dmsgd,
    dsgd,
    ecd_psgd,
    gradient_gossip,
    gradient_tracking,
    qg_dadam,
    qg_dsgdm,
    sgp,
    shared_momentum,
    slowmo,
)
from jaxdist.algorithms.local_sgd import (
    ef_sign_sgd,
    hierarchical_local_sgd,
    local_sgd,
    post_local_sgd,
    sign_sgd,
)
from jaxdist.algorithms.minibatch import minibatch_sgd
from jaxdist.communication import atomo, compression, topology
from jaxdist.core import collectives
from jaxdist.core import cpu as _cpu  # noqa: F401 (so that jaxdist.core.cpu resolves)
from jaxdist.core.layouts import MultiProcess, Sharded, Simulated
from jaxdist.core.state import per_worker, shared, state_class
from jaxdist.errors import ArgumentError, UserError
from jaxdist.objectives import classification
from jaxdist.training import Result, Runner, train

__version__ = "0.2.0"


def __getattr__(name):
  if name == "kernels":  # the kernel methods ([You20] ch. 2-4), imported when first used
    import importlib

    return importlib.import_module("jaxdist.kernels")
  raise AttributeError(f"module 'jaxdist' has no attribute {name!r}")


__all__ = [
    "ArgumentError", "ConsensusControl", "MultiProcess", "Result", "Runner", "Sharded", "Simulated",
    "UserError", "algorithms", "asynchrony", "atomo", "batching", "choco_sgd", "classification",
    "collectives", "communication", "compressed_sgd", "compression", "core", "d2", "d2_plus",
    "data", "dcd_psgd", "deepsqueeze", "dmsgd", "dsgd", "ecd_psgd", "ef_sign_sgd", "errors",
    "extrapolation", "federated", "gradient_gossip", "gradient_tracking", "hierarchical_local_sgd",
    "kernels", "local_sgd", "minibatch_sgd", "models", "objectives", "optim", "per_worker",
    "post_local_sgd", "qg_dadam", "qg_dsgdm", "search", "sgp", "shared", "shared_momentum",
    "sign_sgd", "slowmo", "state_class", "topology", "train", "training",
]
