# The few verbs people type. `make run` and `make test` set everything up themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# seconds per cell before a run fails: one training cell of `quick`'s notebook 03 took over 15 min on a busy 2-core CPU
CELL_TIMEOUT ?= 3600

.PHONY: run export solutions test setup lab nb bench gpu-check readme lint clean

## run: all notebooks in order on $(PROFILE) (default quick) with papermill; figures and their run times into
## figures/$(PROFILE)/ (the tracked figures of that profile), executed copies into executed/$(PROFILE)/, then the
## README's results and the notebooks' run-time lines from them (make readme)
run: $(VENV)/.installed
	TPAP_FIGURES=figures/$(PROFILE) $(PY) -m tpap_nb.runner --profile $(PROFILE) --out build/$(PROFILE) \
		--cell-timeout $(CELL_TIMEOUT) --executed
	$(MAKE) readme

## export: executed copies of an earlier run's papermill outputs (build/$(PROFILE)/) into executed/$(PROFILE)/
export: $(VENV)/.installed
	$(PY) -m tpap_nb.runner --export build/$(PROFILE)

## solutions: the worked solutions (solutions/NN_*.ipynb) on $(PROFILE), reusing `make run`'s checkpoints; their
## figures into build/, their run times into figures/$(PROFILE)/runtimes.json (for the notebooks' run-time lines)
solutions: $(VENV)/.installed
	TPAP_FIGURES=build/$(PROFILE)/solutions/figures $(PY) -m tpap_nb.runner --dir solutions \
		--profile $(PROFILE) --times figures/$(PROFILE) --out build/$(PROFILE)/solutions --cell-timeout $(CELL_TIMEOUT)
	$(PY) -m tpap_nb.runner --stamp

## test: lint, pytest, then every notebook and every solution on the smoke profile (what CI runs)
SMOKE := TPAP_FIGURES=build/smoke/figures TPAP_RUNS=build/smoke/runs
test: $(VENV)/.installed
	$(VENV)/bin/ruff check tpap_nb tests
	$(PY) -m pytest -q
	$(SMOKE) $(PY) -m tpap_nb.runner --profile smoke --out build/smoke --cell-timeout 900
	$(SMOKE) $(PY) -m tpap_nb.runner --dir solutions --profile smoke --out build/smoke/solutions --cell-timeout 900

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1
	touch $@

## lab: JupyterLab on the notebooks
lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )  # containers run as root

## nb: one notebook on one profile, e.g. make nb NB=01 PROFILE=paper (figures into build/$(PROFILE)/figures)
nb: $(VENV)/.installed
	TPAP_FIGURES=build/$(PROFILE)/figures $(PY) -m tpap_nb.runner --profile $(PROFILE) --only $(NB) \
		--out build/$(PROFILE) --cell-timeout $(CELL_TIMEOUT)

## bench: speed ratios on this machine (python -m tpap_nb.experiments.bench --help for options)
bench: $(VENV)/.installed
	$(PY) -m tpap_nb.experiments.bench

## readme: rewrite the README's results section from figures/<profile>/*.json (the last run's numbers) and
## every notebook's run-time line and install cell from figures/<profile>/runtimes.json
readme: $(VENV)/.installed
	$(PY) -m tpap_nb.readme
	$(PY) -m tpap_nb.runner --stamp

## gpu-check: the GPU check (bench, paper epochs, the gpu profile, a Tab. 2 subset) into $(OUT) (~9 min on one H100)
OUT ?= build/gpu-check
gpu-check:
	$(PYTHON) -m tpap_nb.experiments.gpu_check --out $(OUT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tpap_nb tests

clean:
	rm -rf build
