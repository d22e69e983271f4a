"""Stages: artifact → artifact functions on the CPU, each ``stage(input, typed config) -> StageResult``.

export (ultralytics → ONNX), simplify (onnxsim + parity), nms (NMS appended), and the precision stages compiled
into the ONNX (``precision/``: fp16, calibrate, int8). Each goes through ``artifacts.run_stage``.
"""
