"""Test doubles for the GPU-only dependencies (TensorRT), each checked name by name against the real API lists.

Project rule: a double is acceptable only when every name it offers is checked against the committed lists taken
from the real bindings (tests/trt_api/*.txt), so code that passes under the double uses names that exist.
"""
