# Every target bootstraps itself into .venv from a clean clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MP     := $(VENV)/bin/micropython
STAMP  := $(VENV)/.installed
MP_HEAP ?= 96k

.PHONY: setup chromium test test-full test-cpython test-mp compile demo bench bench-report lint vectors fuzz clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@# PostgreSQL server binaries for the receiver's tests (tests/pg.py); only root can install them
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -q && \
		apt-get install -y -q postgresql; } || echo "PostgreSQL is not installed (apt-get install postgresql as root): the receiver's PostgreSQL tests need it"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@$(MAKE) --no-print-directory chromium
	@touch $(STAMP)

# The console's browser tests drive Debian's chromium (never a browser
# downloaded by a test tool); installed here when missing and we may.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the console's browser tests"; \
	    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install chromium' (the console's browser tests need it)"; exit 1; fi; }

test: setup test-cpython test-mp compile

test-full: test
	@echo "== faithful mode: every shipped scenario in the MicroPython VM =="
	$(PY) tests/faithful_full.py

test-cpython: setup
	@echo "== CPython suite =="
	$(PY) -m pytest -q -p no:cacheprovider tests

test-mp: setup
	@echo "== MicroPython suite (heap $(MP_HEAP)) =="
	@rm -rf build/mp
	@$(PY) tools/mpy_compile.py firmware protocol tests/device host_sim/sim7600_answers.py --march '' --out build/mp >/dev/null
	@$(PY) tools/romfs.py build/mp build/mp.romfs firmware protocol tests/device host_sim
	$(MP) -X heapsize=$(MP_HEAP) tests/mp_runner.py --mpy build/mp --heap $(MP_HEAP)

compile: setup
	@echo "== mpy-cross compile =="
	$(PY) tools/mpy_compile.py firmware protocol

demo: setup
	$(VENV)/bin/panic sim demo

# make bench [ARGS="nmea sim"]: the benches, a closing table, exit 1 on a
# missed target or a crashed bench; bench-report prints the same, exits 0
bench: setup
	$(PY) bench/run.py $(ARGS)

bench-report: setup
	$(PY) bench/run.py --report-only $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(PY) -m panic.layers
	@test -f typings/machine.pyi || $(PY) -m pip install -q --target typings micropython-esp32-stubs
	$(VENV)/bin/pyright
	$(VENV)/bin/pyright -p pyrightconfig.host.json  # tools/, panic/, receiver/ and host_sim/ under their contracts

fuzz: setup
	$(PY) tests/fuzz_modem.py 3000 2000
	$(PY) tests/fuzz_receiver.py tcp 100000
	$(PY) tests/fuzz_receiver.py http 100000
	$(PY) fuzz/console.py 200000
	SIM_RANDOM_EXAMPLES=400 $(PY) -m pytest -q -p no:cacheprovider tests/test_sim_random.py
	PANIC_PROPS_EXAMPLES=2000 FW_EXAMPLES=2000 $(PY) -m pytest -q -p no:cacheprovider \
		tests/test_fw_button_props.py tests/test_fw_nmea_props.py tests/test_fw_host.py tests/test_protocol_props.py

vectors: setup
	$(PY) tools/gen_vectors.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
