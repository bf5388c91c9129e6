# Two commands on a fresh clone: `make train` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/cnn.yaml
# The CIFAR-10 JPEG copy. Point it at your own .tar.gz (image folder or cifar-10-python);
# when the file does not exist, training falls back to torchvision's download into data/.
ARCHIVE ?= ../shared/data/cifar10-jpeg.tar.gz
DATA_ARGS := $(if $(wildcard $(ARCHIVE)),--data.archive $(ARCHIVE))
ARGS ?=

.PHONY: install train test test-fast lint tensorboard report results-table export lr-find bench bench-grid bench-overhead clean

# Re-install only when the project's dependencies change.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

train: install
	$(BIN)/cifar-lightning fit --config $(CONFIG) $(DATA_ARGS) $(ARGS)

# the whole suite, one test process per core (pytest-xdist; the DDP tests share one), and its 15 slowest tests
test: install
	$(BIN)/python -m pytest -n auto --dist loadgroup --durations=15 $(ARGS)

# ruff, its version pinned in the test extra: the style check CI runs (`ruff format .` and `ruff check --fix .` apply it)
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# while editing: the tests neither slow nor in their own process, one test process per core, stopping at the first failure
test-fast: install
	$(BIN)/python -m pytest -n auto -m "not slow and not process" -x -q $(ARGS)

tensorboard: install
	$(BIN)/tensorboard --logdir lightning_logs

# make report RUN=lightning_logs/version_3 [OUT=results/cnn]
report: install
	$(BIN)/cifar-lightning report $(RUN) $(if $(OUT),--out $(OUT))

# make export RUN=lightning_logs/version_3 [CKPT=.../other.ckpt] [OUT=dir]: torch.export (model.pt2) + ONNX
export: install
	$(BIN)/cifar-lightning export --config $(RUN)/config.yaml --ckpt_path $(or $(CKPT),$(RUN)/checkpoints/last.ckpt) $(if $(OUT),--out $(OUT)) $(ARGS)

# make lr-find [CONFIG=configs/cnn.yaml]: loss-versus-rate plot (lr_find.png) and a OneCycle peak rate
lr-find: install
	$(BIN)/cifar-lightning lr-find --config $(CONFIG) $(DATA_ARGS) $(ARGS)

# training images/s: data pipeline vs plain PyTorch loop vs fit through the project -> results/bench.md
bench: install
	$(BIN)/python -m benchmarks.throughput --config $(CONFIG) $(DATA_ARGS) $(ARGS)

# the same for each setting of benchmarks/throughput.py's GRID -> results/bench-grid.md
bench-grid: install
	$(BIN)/python -m benchmarks.throughput --grid --config $(CONFIG) --out results/bench-grid.md $(DATA_ARGS) $(ARGS)

# Lightning's share of a fit's training-loop time, sampled within one run -> results/bench-overhead.md
bench-overhead: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m benchmarks.overhead_profile --config $(CONFIG) $(DATA_ARGS) $(ARGS)

results-table: install
	$(BIN)/python scripts/results_table.py

clean:
	rm -rf .cache .pytest_cache
