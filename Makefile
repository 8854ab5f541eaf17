# lcz_qgis: set-up, tests, demo, packaging. Every target installs what it needs when missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
VERSION := $(shell sed -n 's/^version=//p' metadata.txt)
QGIS_PROCESS := /usr/bin/qgis_process.bin
DEMO_DIR ?= demo_output
DEMO_SIZE_PX ?= 960
# embeddings the demo runs on: geotiff, tessera (a TESSERA-layout zarr store) or aef (the
# AlphaEarth COG-mirror layout with its index), all written from the same synthetic city
DEMO_SOURCE ?= geotiff
QGIS_PROFILE_DIR ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup qgis venv test lint format demo package install bench clean

setup: qgis venv

# Debian's QGIS with its Python bindings (for /usr/bin/python3 only).
qgis: $(QGIS_PROCESS)
$(QGIS_PROCESS):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		qgis python3-qgis qgis-providers python3-venv xvfb

# A venv over Debian's Python that sees the system `qgis` package and takes the ML stack on top.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(QGIS_PROCESS)
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(PY) -m pytest -q

demo: setup
	$(PY) -m lcz_core demo --output $(DEMO_DIR) --size $(DEMO_SIZE_PX) \
		--products $(if $(filter geotiff,$(DEMO_SOURCE)),false,true)
	bash scripts/demo_qgis.sh $(DEMO_DIR) $(DEMO_SOURCE)

# Plugin zip: the plugin folder with the core vendored as lcz_qgis/lib/lcz_core.
package: dist/lcz_qgis-$(VERSION).zip
dist/lcz_qgis-$(VERSION).zip: $(shell git ls-files core lcz_qgis metadata.txt)
	rm -rf build/package && mkdir -p build/package dist
	cp -rL lcz_qgis build/package/lcz_qgis
	cp metadata.txt README.md LICENSE build/package/lcz_qgis/
	find build/package -name '__pycache__' -prune -exec rm -rf {} +
	rm -f $@ && cd build/package && python3 -m zipfile -c ../../$@ lcz_qgis
	@echo "plugin zip: $@"

# Installs the plugin zip into a QGIS profile and points its worker at this venv.
install: package venv
	python3 scripts/install_plugin.py dist/lcz_qgis-$(VERSION).zip "$(QGIS_PROFILE_DIR)" "$(abspath $(PY))"
	$(QGIS_PROCESS) plugins enable lcz_qgis > /dev/null || true  # exits 1 when already enabled
	$(QGIS_PROCESS) list 2>/dev/null | grep '^	lcz:'

bench: setup
	$(PY) -m bench

clean:
	rm -rf build dist $(DEMO_DIR) .pytest_cache
