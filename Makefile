# Set-up and the main jobs. Everything is installed from this project's own files into .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,eval,tts,serve,demo]'
	$(BIN)/python -m compileall -q puppetry ui  # bytecode, as a normal install has (saves ~0.1 s a run)
	touch $(STAMP)

demo: $(STAMP)  ## the bundled portrait says the bundled speech -> out.mp4
	$(BIN)/puppetry animate astronaut puppetry/assets/speech_en.ogg -o out.mp4

browser:  ## Debian's chromium, which the browser tests drive through Playwright
	@command -v chromium >/dev/null || [ -n "$$PUPPETRY_CHROMIUM" ] || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

test: $(STAMP) browser  ## the test suite
	$(BIN)/python -m pytest

bench: $(STAMP)  ## the benchmark tables of docs/benchmarks.md
	$(BIN)/python pipelines/benchmark_render.py
	$(BIN)/python pipelines/evaluate_lipsync.py
	$(BIN)/python pipelines/benchmark_animate.py
	$(BIN)/python pipelines/benchmark_stream.py
	$(BIN)/python pipelines/benchmark_reenact.py

clean:
	rm -rf $(VENV) out.mp4
