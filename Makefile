# atomscale-bluesky: every target creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install install-demo brokers test demo lint bench docs clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip

# pip_install SPEC: with uv, which resolves and downloads in parallel from the same index (PyPI):
# the dev install takes about 1 min instead of pip's 3-5, same versions. Without uv, pip does it.
pip_install = { $(PY) -m pip install -q uv && $(VENV)/bin/uv pip install --python $(PY) -q $(1); } \
	|| $(PY) -m pip install -q $(1)

# full development install (tests, lint, docs); re-run when pyproject.toml changes
$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(call pip_install,-e '.[dev]')
	touch $@

# what the demo needs: simulated IOCs, local server, figure
# (the extras are in a variable: a literal comma would split $(call)'s argument)
DEMO_EXTRAS := .[sim,server,demo]
$(VENV)/.installed-demo: pyproject.toml | $(VENV)/bin/python
	$(call pip_install,-e '$(DEMO_EXTRAS)')
	touch $@

install: $(VENV)/.installed-dev

install-demo: $(VENV)/.installed-demo

# the NATS JetStream server the bus tests start (Debian's package; Kafka's broker is a wheel)
# (the package's own system service is switched off: tests start their own servers on loopback)
brokers:
	@command -v nats-server >/dev/null || { apt-get update -qq && apt-get install -y -qq nats-server \
		&& { systemctl disable --now nats-server >/dev/null 2>&1 || true; }; }

# pytest-xdist workers, one a core: the end-to-end tests' waits (IOC processes, local servers, fault
# windows, subprocesses) overlap, and each worker has its own session IOC on its own free CA ports
# (tests/conftest.py). More workers than cores starve the tests that stream in real time (120 fps
# cameras, the closed loop); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
# pytest exit 5 ("no tests collected") is a failure here, never a green run
test: install brokers
	@$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

demo: install-demo
	$(VENV)/bin/atomscale-bluesky demo $(DEMO_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) -m benchmarks $(BENCH_ARGS)

docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache
