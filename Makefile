# Every target that runs code first makes sure the virtualenv matches pyproject.toml,
# so `make demo` and `make test` each work as one command on a fresh clone.
PYTHON ?= python3.11
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test test-fast eval bench check lint typecheck clean samples assets browser ldap-server oidc-provider translations translations-update ocr

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# Ingest the bundled sample documents into ./var, answer one question on the command line,
# then serve the portal on http://127.0.0.1:8000/ (first start prints the admin account).
# Answers are extractive until a model is built with `docqa model build`.
demo: venv assets translations ocr
	$(BIN)/docqa ingest samples/docs --collection handbook
	$(BIN)/docqa ask "What is the hotel limit in London?"
	$(BIN)/docqa serve

# The whole suite but the quality evaluations, browser tests included. This is what CI
# runs (budget: 25 min with setup on the slowest 2-core machine; see README "Testing").
# Two processes share the CPU while most tests wait on databases, workers and browsers;
# the few tests that bound latencies then run alone. --durations prints the slowest.
# Whole files go to a process (--dist loadfile), so a file's module fixtures (ingested
# corpora, built models) are made once; the longest files start first (LONG_FIRST in
# tests/conftest.py) so that both processes finish together.
PYTEST_PARALLEL ?= -n 2 --dist loadfile
test: venv assets translations browser ldap-server oidc-provider ocr
	$(BIN)/pytest -q -m "not eval and not serial" $(PYTEST_PARALLEL) --durations=30
	$(BIN)/pytest -q -m "serial and not eval" --durations=10

# The UI's languages: the gettext catalogs web/translations/<lang>/LC_MESSAGES/*.po compiled
# to the .mo files Flask-Babel and the pages' browser strings read (the build's step; only
# the .po files are in git). messages = templates and Python, js = web/static/js.
translations: venv
	$(BIN)/pybabel compile -d web/translations -D messages 2>&1 | grep -v '^compiling' || true
	$(BIN)/pybabel compile -d web/translations -D js 2>&1 | grep -v '^compiling' || true

# After changing UI strings: extract them and merge them into every .po for translating
# (a test fails while any string of the pages lacks a translation).
translations-update: venv
	@mkdir -p var
	$(BIN)/pybabel --quiet extract -F babel.cfg -k lazy_gettext --no-location -o var/messages.pot .
	$(BIN)/pybabel --quiet extract -F babel-js.cfg -k _ -k ngettext:1,2 --no-location -o var/js.pot .
	$(BIN)/pybabel --quiet update -i var/messages.pot -d web/translations -D messages --no-fuzzy-matching --ignore-obsolete --width 100
	$(BIN)/pybabel --quiet update -i var/js.pot -d web/translations -D js --no-fuzzy-matching --ignore-obsolete --width 100

# The quick loop while developing: no quality evaluations, worker faults, latency bounds.
test-fast: venv assets translations ocr
	$(BIN)/pytest -q -m "not slow and not eval and not serial" $(PYTEST_PARALLEL)

# Quality evaluations over whole datasets (minutes to an hour on 2 cores): retrieval on
# SciFact and all of XQuAD (zh, en), every file of the shared corpus through the sandbox,
# and a corpus slice on real Celery workers compared with the embedded mode. Needs Redis
# and PostgreSQL like make test. Built eval indexes are kept in var/test-eval.
eval: venv ocr
	$(BIN)/pytest -q -s -m eval --durations=10

# BENCH_ARGS=--quick: the language model at 2 and 4 layers only, not the whole 4B model
bench: venv ocr
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

check: lint typecheck

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

samples: venv
	$(BIN)/python samples/build_samples.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Browser assets for the web portal, served locally from web/static/vendor (no CDN):
# install the exact versions from web/frontend/package-lock.json, then copy the browser
# builds with web/frontend/build.mjs. The stamp is named after the lockfile and build
# script, so a second `make assets` does nothing until one of them changes.
NPM ?= npm
NODE ?= node
NPM_CI_FLAGS ?= --no-audit --no-fund --omit=optional --ignore-scripts
FRONTEND_DIR := web/frontend
VENDOR_DIR := web/static/vendor
ASSETS_STAMP := $(VENDOR_DIR)/.stamp-$(shell cat $(FRONTEND_DIR)/package-lock.json $(FRONTEND_DIR)/build.mjs | sha256sum | cut -c1-16)

assets: $(ASSETS_STAMP)

$(ASSETS_STAMP): $(FRONTEND_DIR)/package.json $(FRONTEND_DIR)/package-lock.json $(FRONTEND_DIR)/build.mjs
	$(NPM) ci $(NPM_CI_FLAGS) --prefix $(FRONTEND_DIR)
	$(NODE) $(FRONTEND_DIR)/build.mjs
	@touch $@

# The browser tests drive Debian's Chromium (never a downloaded one); install it if missing.
# A Chinese font too (WenQuanYi Micro Hei, 5 MB), so the Chinese pages' screenshots show
# characters rather than empty boxes.
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-microhei
browser:
	@{ test -x /usr/bin/chromium && test -d /usr/share/fonts/truetype/wqy; } || { \
	  echo "installing chromium and a Chinese font for the browser tests"; \
	  $(SUDO) apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null; }; }

# OCR for scanned PDFs and images: Tesseract with its English and Simplified Chinese data
# (Debian's packages, about 15 MB; nothing is downloaded at run time).
OCR_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim
ocr:
	@{ command -v tesseract >/dev/null && tesseract --list-langs 2>/dev/null | grep -qx chi_sim; } || { \
	  echo "installing tesseract (OCR) with English and Chinese"; \
	  $(SUDO) apt-get install -y -q $(OCR_PACKAGES) >/dev/null || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $(OCR_PACKAGES) >/dev/null; }; }

# OpenLDAP's server for the directory sign-in tests (tests/ldap_server.py starts its own
# slapd in a temp dir on free ports; the package's system service is not used).
ldap-server:
	@test -x /usr/sbin/slapd || { \
	  echo "installing slapd for the directory sign-in tests"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q slapd ldap-utils >/dev/null || \
	  { $(SUDO) apt-get update -q >/dev/null && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q slapd ldap-utils >/dev/null; }; }

# A real OpenID provider for the single sign-on tests: panva's certified oidc-provider at
# the version tests/oidc_provider/package-lock.json pins, run with the machine's Node.js by
# tests/oidc_server.py. The stamp is named after the lockfile, like the browser assets.
OIDC_DIR := tests/oidc_provider
OIDC_STAMP := $(OIDC_DIR)/node_modules/.stamp-$(shell cat $(OIDC_DIR)/package-lock.json | sha256sum | cut -c1-16)

oidc-provider: $(OIDC_STAMP)

$(OIDC_STAMP): $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	$(NPM) ci $(NPM_CI_FLAGS) --prefix $(OIDC_DIR)
	@rm -f $(OIDC_DIR)/node_modules/.stamp-*
	@touch $@
