# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# they install the dataset (Debian package), the virtual environment and the test servers first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OLAH   := .venv-olah/bin/olah-cli
DATA   := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PYTEST_ARGS ?=

.PHONY: install data demo lint test test-all bench clean

install: $(BIN)/menas-zoo

$(BIN)/menas-zoo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,ray]"
	touch $@

data: $(DATA)

$(DATA):
	apt-get update -q && apt-get install -y -q dataset-fashion-mnist

# A read-only Hub-compatible server (olah) for the zoo's load/push tests, kept apart from the project venv.
$(OLAH):
	$(PYTHON) -m venv .venv-olah
	.venv-olah/bin/pip install -q 'olah==0.5.4'

# The main job: get the zoo's model (offline, from the copy bundled in the package), export it to ONNX,
# prove parity on real images and check its ONNX Runtime latency against a budget.
demo: install data
	HF_HUB_OFFLINE=1 $(BIN)/menas-zoo load mt-a
	$(BIN)/menas-zoo export mt-a --out exported/mt-a --max-latency-ms 20

# pyflakes, bugbear and the 120-character line (pyproject.toml's [tool.ruff]); milliseconds, so `test` runs it first
lint: install
	$(BIN)/ruff check .

test: install data $(OLAH) lint
	MENAS_OLAH_CLI=$(CURDIR)/$(OLAH) HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1 \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: PYTEST_ARGS = -m ""
test-all: test

bench: install data
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/export_latency.py
	$(BIN)/python benchmarks/latency_table.py

clean:
	rm -rf $(VENV) .venv-olah .pytest_cache build *.egg-info exported
