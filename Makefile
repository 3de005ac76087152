# The two set-up commands of the README:
#   make book [PROFILE=cpu|smoke|gpu]   run the notebooks of a profile on $(RTSSEG_DATA) and build book/_build/html
#                                       (other profiles than cpu: runs/<profile>/book/_build/html)
#   make test                           run the tests
# and beside them:
#   make test-fast                      the tests not marked slow (a few minutes on 2 cores)
PROFILE ?= cpu
PYTHON ?= python3
# The venv is .venv unless named on the command line (make VENV=... test): a VENV in the environment is ignored.
VENV := .venv
BIN := $(VENV)/bin
export RTSSEG_DATA ?= $(abspath ../shared/data)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: book test test-fast install clean-book

book: $(VENV)/.installed
	$(BIN)/rtsseg run --profile $(PROFILE)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow"

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (rtsseg)" >/dev/null
	touch $@

clean-book:
	rm -rf book/_build
