# Two commands on a fresh machine with python3 and make:  make demo  and  make test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	touch $@

# Local SGD and its mini-batch baseline on MNIST-1D, then a plot of both runs.
demo: $(VENV)/.installed
	$(BIN)/python -m launch --config configs/quickstart.py --workdir runs/quickstart
	$(BIN)/python -m launch --config configs/quickstart.py:minibatch --workdir runs/quickstart_minibatch
	$(BIN)/python -m jaxdist.experiment.plot runs/quickstart runs/quickstart_minibatch --out runs/quickstart.png

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/simulation_overhead.py

clean:
	rm -rf $(VENV) runs
