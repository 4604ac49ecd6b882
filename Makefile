# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine:
# they install the dataset (Debian package), the virtual environment and the test servers first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OLAH   := .venv-olah/bin/olah-cli
DATA   := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PYTEST_ARGS ?=

.PHONY: install data demo test test-all bench clean

install: $(BIN)/menas-zoo

$(BIN)/menas-zoo: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

data: $(DATA)

$(DATA):
	apt-get update -q && apt-get install -y -q dataset-fashion-mnist

# A read-only Hub-compatible server (olah) for the zoo's load/push tests, kept apart from the project venv.
$(OLAH):
	$(PYTHON) -m venv .venv-olah
	.venv-olah/bin/pip install -q 'olah==0.5.4'

demo: install data
	$(BIN)/menas-zoo info mobilenetv3-small --in-chans 1 --resolution 28 --num-classes 10

test: install data $(OLAH)
	MENAS_OLAH_CLI=$(CURDIR)/$(OLAH) HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1 \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: PYTEST_ARGS = -m ""
test-all: test

bench: install data
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .venv-olah .pytest_cache build *.egg-info
