# trtbuild — two commands on a fresh machine:  `make engine`  and  `make test`.
# Variables (override on the command line, e.g. `make engine IMGSZ=384,640 PRECISION=all`):
MODEL     ?= models/shapes-yolov8n.pt
IMGSZ     ?= 640
BATCH     ?= 1
PRECISION ?= fp16
CALIB     ?= calib_data
STRICT    ?= 0
OUT_DIR   ?= engines
PYTHON    ?= python3
VENV      ?= .venv
PYTEST_ARGS ?=
DATA      ?= datasets/shapes

BIN := $(VENV)/bin
STAMP := $(VENV)/.trtbuild-installed
STRICT_FLAG := $(if $(filter 1 yes true,$(STRICT)),--strict,)

.PHONY: help install engine test bench data eval clean distclean

help:
	@echo "make engine   export → simplify → (precision, build where TensorRT exists) for MODEL=$(MODEL)"
	@echo "make test     run the test suite (installs into $(VENV) first if needed)"
	@echo "make bench    pre/post-processing benchmark against ultralytics"
	@echo "make data     generate the reference model's synthetic val split into DATA=$(DATA)"
	@echo "make eval     mAP of the simplified ONNX of MODEL on DATA (runs make engine and make data first)"
	@echo "make clean    remove build artifacts in $(OUT_DIR)/ (keeps the venv)"
	@echo "variables: MODEL IMGSZ BATCH PRECISION (fp32|fp16|int8|all) CALIB STRICT=1 OUT_DIR DATA"

install: $(STAMP)

# The venv is (re)installed when it is missing or pyproject.toml changed.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

engine: $(STAMP)
	$(BIN)/trtbuild engine --model $(MODEL) --imgsz $(IMGSZ) --batch $(BATCH) --precision $(PRECISION) \
		--calib $(CALIB) --out-dir $(OUT_DIR) $(STRICT_FLAG)

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python bench/prepost.py

$(DATA)/data.yaml: | $(STAMP)
	$(BIN)/trtbuild synth --out $(DATA) --train 0 --val 500 --seed 0

data: $(DATA)/data.yaml

eval: engine data
	$(BIN)/trtbuild eval $(OUT_DIR)/$(basename $(notdir $(MODEL))).sim.onnx --data $(DATA) \
		--report $(OUT_DIR)/$(basename $(notdir $(MODEL))).eval.json

clean:
	find $(OUT_DIR) -mindepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .pytest_cache runs

dist$(DATA)/data.yaml: | $(STAMP)
	$(BIN)/trtbuild synth --out $(DATA) --train 0 --val 500 --seed 0

data: $(DATA)/data.yaml

eval: engine data
	$(BIN)/trtbuild eval $(OUT_DIR)/$(basename $(notdir $(MODEL))).sim.onnx --data $(DATA) \
		--report $(OUT_DIR)/$(basename $(notdir $(MODEL))).eval.json

clean: clean
	rm -rf $(VENV) *.egg-info
