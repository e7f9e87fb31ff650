# Two commands on a fresh machine with python3 and make:  make demo  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint docs bench bench-torch clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $@

# Local SGD and its mini-batch baseline on MNIST-1D, then a plot of both runs.
demo: $(VENV)/.installed
	$(BIN)/python -m launch --config configs/quickstart.py --workdir runs/quickstart
	$(BIN)/python -m launch --config configs/quickstart.py:minibatch --workdir runs/quickstart_minibatch
	$(BIN)/python -m jaxdist.experiment.plot runs/quickstart runs/quickstart_minibatch --out runs/quickstart.png

test: lint
	$(BIN)/python -m pytest -n 2 -q

lint: $(VENV)/.installed
	$(BIN)/ruff check .

# The API reference, built from the docstrings, in docs/api/index.html.
docs: $(VENV)/.installed
	$(BIN)/python -m pdoc jaxdist jaxdist.experiment --docformat google -o docs/api

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/simulation_overhead.py

# Against a PyTorch loop over the workers: torch (CPU build) is a benchmark dependency only.
bench-torch: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
	  --index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu
	$(BIN)/python benchmarks/torch_loop.py

clean:
	rm -rf $(VENV) runs docs/api
