"""Hyperparameter search: successive halving and Hyperband as Dask-ML defines them (Sievert's
thesis, ch. 2), over populations of trials trained as vmapped programs.

    population = jaxdist.search.Population(build, init_model, data, score, num_workers=4,
                                           steps_per_call=20, static=("local_steps",))
    space = {"learning_rate": jaxdist.search.LogUniform(1e-3, 1.0),
             "local_steps": jaxdist.search.Choice([1, 4, 16], static=True)}
    result = jaxdist.search.hyperband(population, space, max_iter=81, seed=0)

Modules: `spaces` (distributions), `brackets` (bracket and rung arithmetic, patience),
`population` (vmapped trials), `priorities` (the order of pending work), `search` (the
scheduler, in process or on a dask.distributed cluster, with checkpoints), `simulator` (a
discrete-event model of a cluster running a search).
"""

from jaxdist.search import brackets, population, priorities, search, simulator, spaces
from jaxdist.search.brackets import Bracket, Rung, hyperband_brackets, metadata, sha_bracket
from jaxdist.search.population import Population
from jaxdist.search.search import SearchResult, hyperband, random_search, successive_halving
from jaxdist.search.spaces import Choice, Integer, LogUniform, Uniform, sample

__all__ = [
    "Bracket", "Choice", "Integer", "LogUniform", "Population", "Rung", "SearchResult",
    "Uniform", "brackets", "hyperband", "hyperband_brackets", "metadata", "population",
    "priorities", "random_search", "sample", "search", "sha_bracket", "simulator", "spaces",
    "successive_halving",
]
