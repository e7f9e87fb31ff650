"""A population of N trials gives each trial the numbers of running it alone with the runner."""

import jax
import numpy as np
import pytest
from search_problem import build, data, init_model, population, score

import jaxdist
from jaxdist.errors import ArgumentError
from jaxdist.search.population import MODEL_KEY

CONFIGS = [dict(learning_rate=0.3, momentum=0.0, local_steps=2),
           dict(learning_rate=0.05, momentum=0.9, local_steps=2),
           dict(learning_rate=0.8, momentum=0.5, local_steps=2)]
SEEDS = [11, 12, 13]


def test_each_trial_of_a_population_equals_it_alone():
  pop = population()
  states = pop.init(CONFIGS, SEEDS)
  states, metrics = pop.train(CONFIGS, states, 0, 1)
  states, metrics = pop.train(CONFIGS, states, 1, 2)  # 3 calls = 6 steps
  scores = pop.score(CONFIGS, states)
  assert metrics["loss"].shape == (3,) and len(set(np.round(scores, 4))) == 3
  for i in (0, 1):
    config = CONFIGS[i]
    params, model_state = init_model(config, jax.random.fold_in(jax.random.PRNGKey(SEEDS[i]),
                                                                MODEL_KEY))
    runner = jaxdist.Runner(build(config), data(config), num_workers=2, seed=SEEDS[i],
                            steps_per_chunk=2)
    alone, _ = runner.run(runner.init(params, model_state), 6)
    mine = jax.tree.map(lambda x, i=i: x[i], states.algorithm.params)
    # equal to float rounding (the vmapped products sum in another order)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 jax.device_get(alone.algorithm.params), mine)
    assert int(states.step[i]) == 6
    averaged, _ = runner.deployed(alone)
    assert abs(float(score(config, averaged, {})) - scores[i]) < 1e-5


def test_a_population_holds_one_shape_group():
  pop = population()
  with pytest.raises(ArgumentError, match="configs: trials of 2 shape groups"):
    pop.init([CONFIGS[0], {**CONFIGS[1], "local_steps": 4}], SEEDS[:2])
