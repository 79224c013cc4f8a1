# Two commands on a fresh machine with Python 3.11+ and make: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: demo test lint infra-lint pytest bench reliability schemas clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps re-install only when pyproject.toml changes.
$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[cli]'
	touch $@

# Every extra, and the dev tools from pyproject's [dependency-groups] (not an extra, so
# not published); `pip install --group` needs pip >= 25.1, also in a venv made earlier.
EXTRAS := s3,fsspec,s3fs,gcs,azure,cli,ui,otel,langgraph,powertools
$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade 'pip>=25.1'
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]' --group dev
	touch $@

# Checkpointing, shown: the first run kills itself (SIGKILL) halfway through "transform";
# the second waits for the dead run's lease, skips the COMPLETE stages and resumes.
demo: $(VENV)/.demo-installed
	@$(BIN)/eleanor-cloud demo --reset --crash-at transform; \
	rc=$$?; if [ $$rc -ne 137 ]; then echo "demo: expected the crash run to be killed (137), got $$rc" >&2; exit 1; fi
	@echo; echo "--- the process above was killed mid-stage; running the demo again resumes it ---"; echo
	$(BIN)/eleanor-cloud demo
	$(BIN)/eleanor-cloud status demo

lint: $(VENV)/.test-installed
	$(BIN)/ruff check eleanor_cloud tests benchmarks
	$(BIN)/ruff format --check eleanor_cloud tests benchmarks
	$(BIN)/mypy eleanor_cloud

# The JSON Schemas of the CLI's --json documents, regenerated from their models
# (eleanor_cloud/cli/shapes.py); tests/cli/test_schemas.py fails while they differ.
schemas: $(VENV)/.test-installed
	$(PY) -c 'from eleanor_cloud.cli import shapes; [open(f"eleanor_cloud/cli/schemas/{k}.json", "w").write(shapes.schema_text(k)) for k in shapes.DOCUMENTS]'

# Azurite (the Azure Blob emulator that tests/fsspec starts) is a project-local npm package.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser tests (tests/ui) drive Debian's chromium through Playwright; Playwright's
# own browser download needs a host this workplace cannot reach, so the system package
# is used (ELEANOR_CHROMIUM overrides the path).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core) >/dev/null; \
	else echo "chromium missing: run 'sudo apt-get install chromium' (tests/ui need it)" >&2; exit 1; fi

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
pytest: $(VENV)/.test-installed node_modules/.installed $(CHROMIUM)
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

# Benchmarks (benchmarks/README.md): tables on stdout, figures in benchmarks/results/latest.json.
# BENCH_ARGS=--quick for a fast check of the harness; --only <section> for one section.
bench: $(VENV)/.test-installed
	$(PY) -m benchmarks $(BENCH_ARGS)

# The full reliability campaign (tests/reliability/README.md): every scenario at full size,
# one summary line each (also appended to .eleanor/reliability.log). `make test` runs the
# same scenarios at a small size.
reliability: $(VENV)/.test-installed
	@mkdir -p .eleanor && rm -f .eleanor/reliability.log
	ELEANOR_RELIABILITY=full ELEANOR_RELIABILITY_LOG=.eleanor/reliability.log \
		$(BIN)/pytest tests/reliability -m reliability -s -p no:cacheprovider --timeout 1800 \
		$(PYTEST_ARGS)
	@cat .eleanor/reliability.log

# infra/ templates: cfn-lint (no errors) and checkov (no failed checks; a skipped check
# carries its reason in the template metadata). Both live in their own venv, created on
# first use, because checkov pins many packages.
INFRA_VENV := .venv-infra
$(INFRA_VENV)/.installed: infra/requirements-lint.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r infra/requirements-lint.txt
	touch $@

infra-lint: $(INFRA_VENV)/.installed
	$(INFRA_VENV)/bin/cfn-lint infra/*.yaml
	BC_SKIP_MAPPING=TRUE $(INFRA_VENV)/bin/checkov --directory infra \
		--framework cloudformation dockerfile --skip-download --compact --quiet

test: lint infra-lint pytest

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .eleanor
