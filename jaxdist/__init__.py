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
    batching,
    communication,
    core,
    data,
    models,
    objectives,
    optim,
    training,
)
from jaxdist.algorithms import extrapolation
from jaxdist.algorithms.compressed_sgd import compressed_sgd
from jaxdist.algorithms.decentralized import (
    ConsensusControl,
    choco_sgd,
    d2,
    d2_plus,
    dsgd,
    gradient_tracking,
    qg_dsgdm,
)
from jaxdist.algorithms.local_sgd import hierarchical_local_sgd, local_sgd, post_local_sgd, sign_sgd
from jaxdist.algorithms.minibatch import minibatch_sgd
from jaxdist.communication import atomo, compression, topology
from jaxdist.core import collectives
from jaxdist.core.layouts import MultiProcess, Sharded, Simulated
from jaxdist.core.state import per_worker, shared, state_class
from jaxdist.errors import ArgumentError, UserError
from jaxdist.objectives import classification
from jaxdist.training import Result, Runner, train

__version__ = "0.2.0"

__all__ = [
    "ArgumentError", "ConsensusControl", "MultiProcess", "Result", "Runner", "Sharded", "Simulated",
    "UserError", "algorithms", "atomo", "batching", "choco_sgd", "classification", "collectives",
    "communication", "compressed_sgd", "compression", "core", "d2", "d2_plus", "data", "dsgd",
    "errors", "extrapolation", "gradient_tracking", "hierarchical_local_sgd", "local_sgd",
    "minibatch_sgd", "models", "objectives", "optim", "per_worker", "post_local_sgd", "qg_dsgdm",
    "shared", "sign_sgd", "state_class", "topology", "train", "training",
]
