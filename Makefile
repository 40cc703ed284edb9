# Two commands for a newcomer: `make book` and `make test` (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The ISBI 2012 slices: use $UNET_TEACH_DATA when set, else ../shared/data when it exists
# (the project's own machines), else unet_teach downloads them once into a user cache.
ifeq ($(origin UNET_TEACH_DATA), undefined)
  ifneq ($(wildcard ../shared/data/isbi2012),)
    export UNET_TEACH_DATA := $(abspath ../shared/data)
  endif
endif

.PHONY: install book test test-fast test-nbval release clean gpu-check

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# Execute every chapter and build the HTML book into _build/html; warnings are errors.
book: $(STAMP)
	UNET_TEACH_BOOK_BUILD=1 $(VENV)/bin/jupyter-book build . --all -W -n --keep-going

# The whole test suite: the package's doctests and tests/, which builds the book (executing
# every chapter once) and grades the exercises. Grading runs every exercise solution notebook
# once, as the grader's own reference run, which fails on any cell that raises as nbval
# would; nbval does not run them a second time here (`make test-nbval` does, and the GPU check).
test: $(STAMP)
	$(PY) -m pytest --doctest-modules unet_teach tests

# The exercise solution notebooks under nbval, as a student's or a CI's notebook runner sees them.
test-nbval: $(STAMP)
	$(PY) -m pytest --nbval-lax --nbval-current-env exercises/source

# The daily loop (<= 2 minutes on 2 cores): everything but the book build, the tests that start
# Jupyter kernels and the slow ones (the markers `book`, `kernel`, `slow`: pyproject.toml).
test-fast: $(STAMP)
	$(PY) -m pytest --doctest-modules -m "not book and not kernel and not slow" unet_teach tests

release: $(STAMP)
	$(VENV)/bin/unet-teach release

clean:
	rm -rf _build

# The whole GPU proof in one run (scripts/gpu_check.sh: facts, the bench ladder, the exercises
# under nbval, every chapter in the CUDA profile); a CPU dry run without CUDA. Needs no venv.
gpu-check:
	bash scripts/gpu_check.sh "$(OUT)"
