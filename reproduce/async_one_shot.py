"""One-shot averaging, convex against non-convex (spec check 7 [S3 L672-818]).

Convex: least squares (d = 10) split into P = 4 shards, each solved by SGD alone
(`one_shot_averaging`), the models averaged once. Prediction: the averaged model's excess loss is
small, of the order of the full-data estimator's. Non-convex: a symmetric toy, y = w^2 x with
true w^2 = 1, so w = +1 and w = -1 are both optimal; shards started on either side (as random
initialisations would) settle in different basins, the average lands near the bad point w = 0,
while averaging the predictions (the ensemble [S3 L818]) stays good.

  python reproduce/async_one_shot.py      (under a minute on two CPU cores)
"""

import jax.numpy as jnp
import numpy as np
import optax

import jaxdist
from jaxdist import asynchrony

P, STEPS = 4, 1500


def squares(predict):
  def loss_fn(params, model_state, batch, rng):
    del rng
    value = jnp.mean((predict(params, batch["x"]) - batch["y"]) ** 2)
    return value, (model_state, {"loss": value})
  return loss_fn


def train(loss_fn, arrays, params, signs=None):
  data = jaxdist.data.sampled(arrays, num_workers=P, batch_size=8, partition="iid_fixed", seed=0)
  runner = jaxdist.Runner(asynchrony.one_shot_averaging(loss_fn, optax.sgd, learning_rate=0.01),
                          data, seed=0, steps_per_chunk=STEPS)
  state = runner.init(params, {})
  if signs is not None:  # the workers start on different sides of the symmetry
    algorithm = state.algorithm.replace(params={"w": jnp.asarray(signs, jnp.float32) * 0.5})
    state = state.replace(algorithm=algorithm)
  state, _ = runner.run(state, STEPS)
  averaged, _ = runner.deployed(state)
  stacked, _ = runner.deployed(state, average=False)
  return averaged, stacked


def main():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4000, 10)).astype(np.float32)
  w_true = rng.normal(size=10)
  y = (x @ w_true + 0.5 * rng.normal(size=4000)).astype(np.float32)
  linear = lambda p, v: v @ p["w"]
  full = np.linalg.lstsq(x, y, rcond=None)[0]
  loss = lambda w: float(np.mean((x @ np.asarray(w) - y) ** 2))
  averaged, stacked = train(squares(linear), {"x": x, "y": y}, {"w": jnp.zeros(10)})
  best = loss(full)
  print("convex least squares (P = 4 shards, SGD alone on each, then one average)")
  print(f"  excess loss over the full-data least-squares optimum ({best:.4f}):")
  print("  shards alone: " + ", ".join(f"{loss(w) - best:.4f}" for w in stacked["w"]))
  print(f"  averaged model: {loss(averaged['w']) - best:.4f}   (small, as predicted)")

  t = rng.normal(size=(4000, 1)).astype(np.float32)
  target = (t[:, 0] + 0.1 * rng.normal(size=4000)).astype(np.float32)
  square = lambda p, v: p["w"] ** 2 * v[:, 0]
  averaged, stacked = train(squares(square), {"x": t, "y": target}, {"w": jnp.zeros(())},
                            signs=[1, -1, 1, -1])
  mse = lambda prediction: float(np.mean((np.asarray(prediction) - target) ** 2))
  ensemble = asynchrony.prediction_average(square, stacked, jnp.asarray(t))
  print("\nnon-convex symmetric toy y = w^2 x (optima w = +1 and -1; workers start at +-0.5)")
  print("  workers' w: " + ", ".join(f"{float(w):+.3f}" for w in stacked["w"]))
  print(f"  averaged w = {float(averaged['w']):+.3f}: mean squared error "
        f"{mse(square(averaged, t)):.4f}   (fails: near w = 0)")
  print(f"  ensemble of predictions: mean squared error {mse(ensemble):.4f}   (noise floor 0.01)")


if __name__ == "__main__":
  main()
