"""ONNX graph helpers, the model's geometry read once (``modelinfo``), and the one output comparator (``compare``)."""
