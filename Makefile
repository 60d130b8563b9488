# The two set-up commands (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# One folder per demo run; := evaluates the time stamp once.
RUN    := runs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: demo test lint venv clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pipeline.synthetic
	$(BIN)/python -m pipeline.preprocess data=demo_dev
	$(BIN)/python -m pipeline.preprocess data=demo_heldout
	$(BIN)/python -m pipeline.train data=demo_dev hydra.run.dir=$(RUN)/train
	ln -sfn $(notdir $(RUN)) runs/demo/latest  # the README's commands use runs/demo/latest
	$(BIN)/python -m pipeline.evaluate data=demo_heldout \
		checkpoint=runs/demo/latest/train/checkpoints/best.pt hydra.run.dir=$(RUN)/evaluate

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks

clean-demo:
	rm -rf data/demo cache/demo_dev cache/demo_heldout runs/demo
