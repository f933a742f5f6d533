# The two commands README starts with: `make sample` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup system-deps sample test bench clean

setup: system-deps $(VENV)/.installed

system-deps:  ## ffmpeg/ffprobe for film (Debian's 5.1: libx264, FFV1, ProRes, AAC); mkvmerge to retime VFR film
	@command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && command -v mkvmerge >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg mkvtoolnix >/dev/null; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test,train,dask,external]'
	touch $@

sample: setup  ## colorize the bundled sample archive with embedded defaults
	$(BIN)/colorize run samples/archive var/colour --db sqlite:///var/provenance.db

test: setup  ## the whole test suite (starts its own PostgreSQL, S3 server and Prefect API)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

bench: setup  ## benchmarks: print their figures
	$(BIN)/python bench/bench_refine.py
	$(BIN)/python bench/bench_photo_flow.py
	$(BIN)/python bench/bench_large_scans.py
	$(BIN)/python bench/bench_temporal.py
	$(BIN)/python bench/bench_film.py
	$(BIN)/python bench/bench_fixity.py
	$(BIN)/python bench/bench_manifest.py

clean:
	rm -rf var build .pytest_cache
