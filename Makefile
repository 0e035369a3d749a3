# nnaudit: the two commands of the README do all the set-up on a fresh machine.
#   make demo   create .venv if missing, install nnaudit, run the demo on the bundled zoo
#   make test   same set-up, then the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.nnaudit-installed

.PHONY: setup demo test browser clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The CPU wheel of torch lies on these machines' disk; a plain `torch` would pull a multi-GB CUDA build.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Headless Chromium for the HTML report's browser test (Debian packages).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium for the report browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

demo: setup
	$(VENV)/bin/nnaudit demo

test: setup browser
	$(PY) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build dist *.egg-info out
