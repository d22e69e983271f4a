"""Data: YOLO data sets (``dataset``), the synthetic shapes generator (``synth``), detection metrics (``metrics``)."""
