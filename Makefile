# Set-up and the two jobs of the README. Each target creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test browser bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps record which extras are installed; they are redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/swinkit train

test: $(VENV)/.installed-test browser
	$(BIN)/python -m pytest -q

# The browser tests of `swinkit serve` drive Debian's Chromium through its chromedriver. Missing,
# they are installed when make runs as root; otherwise one line says what to run, and the tests
# that need them are skipped (outside CI; with CI=true they fail).
BROWSER_PACKAGES := chromium chromium-driver
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		:; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing $(BROWSER_PACKAGES) for the browser tests"; \
		{ apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES); } || \
		echo "could not install $(BROWSER_PACKAGES), so the browser tests will be skipped (failed with CI=true)"; \
	else \
		echo "chromium or chromedriver is missing, so the browser tests will be skipped;" \
			"to run them: sudo apt-get install $(BROWSER_PACKAGES)"; \
	fi

# The documentation site (mkdocs.yml), built in strict mode into site/.
docs: $(VENV)/.installed-test
	$(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
