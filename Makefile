# The two commands: `make demo` and `make test`. Both bootstrap .venv and are idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean venv chromium office spark

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/segmint demo --dir segmint-demo --users $${SEGMINT_DEMO_USERS:-50000} --seed $${SEGMINT_DEMO_SEED:-42}
	@echo
	@echo "Serve the demo: the marketer's workspace at http://127.0.0.1:8000/ (sign in as demo, password in"
	@echo "segmint-demo/.segmint/workspace-login.txt), the tracking API, decisions, API docs at /docs:"
	@echo "  $(BIN)/segmint serve -p segmint-demo"
	@echo "Keys for it (each secret is printed once; see docs/serve.md for a curl session):"
	@echo "  $(BIN)/segmint keys create web --scope write -p segmint-demo"

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's Chromium for the report's browser test (never `playwright install`: no downloads)
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "chromium is missing; as root: apt-get install chromium" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

# Debian's LibreOffice Calc (no GUI), to check that exports open in a spreadsheet program
office:
	@command -v soffice >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "soffice is missing; as root: apt-get install libreoffice-calc-nogui" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends libreoffice-calc-nogui; }

# Java 17 and the PostgreSQL JDBC driver for the Spark engine's tests (engine: spark)
spark:
	@{ command -v java >/dev/null && [ -f /usr/share/java/postgresql.jar ]; } || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "java or the JDBC driver is missing; as root: apt-get install openjdk-17-jre-headless libpostgresql-jdbc-java" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless libpostgresql-jdbc-java; }

test: $(STAMP) chromium office spark lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/segment.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/recommend.py
	$(BIN)/python bench/campaign.py

clean:
	rm -rf segmint-demo .pytest_cache .ruff_cache .mypy_cache bench/out
