# facegen developer entry points. `make test` and `make demo` install first when needed.
# Choose another torch build (e.g. CUDA) with:
#   make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu128
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=

BIN         := $(VENV)/bin
STAMP       := $(VENV)/.facegen-installed
CONSTRAINTS := $(VENV)/constraints.txt
INDEX_ARGS  := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
MOFA_CKPT   := runs/mofa/checkpoints/last.ckpt
FACES_CKPT  := runs/stylegan_synth/checkpoints/last.ckpt

.PHONY: install test demo texture-demo composite-demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sed 's/^torch==.*/$(TORCH_SPEC)/' constraints.txt > $(CONSTRAINTS)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) $(INDEX_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) $(INDEX_ARGS) -e ".[dev]"
	touch $@

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: install
	$(BIN)/facegen fit --config configs/mofa.yaml

# the texture quickstart reads the MoFA of `make demo`: trained first when its checkpoint is missing
texture-demo: install
	test -f $(MOFA_CKPT) || $(MAKE) demo
	$(BIN)/facegen fit --config configs/texture_gan.yaml

# the texture paper's pipeline offline: the MoFA of `make demo` and the 2D face generator of
# configs/stylegan_synth.yaml, each trained first when its checkpoint is missing, then composite training
composite-demo: install
	test -f $(MOFA_CKPT) || $(MAKE) demo
	test -f $(FACES_CKPT) || $(BIN)/facegen fit --config configs/stylegan_synth.yaml
	$(BIN)/facegen fit --config configs/texture_gan_composite.yaml

bench: install
	$(BIN)/python benchmarks/render.py

lint: install
	$(BIN)/ruff check facegen tests benchmarks docs
	$(BIN)/ruff format --check facegen tests benchmarks docs

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache lightning_logs wandb
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
