# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint kotlin
$(STAMP): requirements.lock pyproject.toml
	python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/quic-edge demo

# Debian's Kotlin compiler: tests/test_android_demo.py compiles the Android demo's plain-Kotlin parts with it.
kotlin:
	command -v kotlinc >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kotlin)

test: $(STAMP) kotlin
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
