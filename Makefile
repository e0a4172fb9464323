# Two commands for a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install mt into it on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch (a plain `pip install torch` on Linux pulls a multi-GB CUDA build).
# GPU users: install the torch build for their CUDA first; any torch in pyproject's range is kept.
TORCH ?= torch==2.13.0

.PHONY: install demo test test-browser mutants clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e '.[dev,argos]'
	touch $@

demo: install
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

test: install
	$(PY) -m pytest

# The server's web page in headless chromium (Debian's; Playwright's own download fails offline).
# Not part of `make test`: it needs the browser, installed here with apt when missing (root).
# It saves the page's screenshots (desktop, phone, dark) in docs/.
test-browser: install
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PY) -m pip install --quiet -e '.[dev,browser]'
	MT_SCREENSHOTS=docs $(PY) -m pytest -m browser tests/test_browser.py -s

# Not part of `make test` (several minutes): do the tests catch the mutations they should?
mutants: install
	$(PY) scripts/mutants.py

clean:
	rm -rf $(VENV) *.egg-info
