# Resonance Lab. Two commands on a fresh machine:
#   make run    create .venv, install, start the app (CPU JAX) on http://127.0.0.1:8501
#   make test   create/update .venv, install test dependencies (+ Debian chromium), run the suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8501
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.deps: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements-test.txt $(VENV)/.deps
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# core.allocator runs the server with the allocator preloaded (mimalloc from the venv).
# On a GPU the server allocates as it goes (JAX would claim 75 % of the card at start),
# leaving the card to the sweeps launched from the page; set it to true to preallocate.
run: $(VENV)/.deps
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} \
	XLA_PYTHON_CLIENT_PREALLOCATE=$${XLA_PYTHON_CLIENT_PREALLOCATE:-false} \
	$(PY) -m core.allocator $(PY) -m streamlit run app.py \
	  --server.address $(HOST) --server.port $(PORT) --server.headless true

test: $(VENV)/.test-deps chromium
	JAX_PLATFORMS=cpu $(PY) -m pytest tests

bench: $(VENV)/.deps
	JAX_PLATFORMS=cpu $(PY) -m core bench

# Side by side with PyTorch / snnTorch / plain JAX references, one process per
# measurement (benchmarks/compare.py; ~7 min on 2 cores, 2026-12-05). Installs the pinned
# CPU torch and snntorch of requirements-bench.txt into .venv.
.PHONY: bench-compare
$(VENV)/.bench-deps: requirements-bench.txt $(VENV)/.deps
	$(PY) -m pip install -q -r requirements-bench.txt
	touch $@

bench-compare: $(VENV)/.bench-deps
	JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(PY) -m benchmarks.compare small medium vmap --rounds 3

# On a GPU machine whose python3 already has CUDA JAX and CUDA PyTorch (nothing installed):
# compiled kernels vs lax.scan, then medium / on4096 / 1024 students / mixed precision /
# recomputation (benchmarks/gpu_check.sh; results in $$OUT, default gpu-results/).
.PHONY: bench-gpu
bench-gpu:
	bash benchmarks/gpu_check.sh all

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis artifacts
