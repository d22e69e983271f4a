"""Precision compiled into the ONNX on the CPU: FP16-typed graphs, calibration ranges, the TensorRT 10 table, Q/DQ."""
