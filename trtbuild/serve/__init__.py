"""Serving at scale with Triton Inference Server: model configurations, the Python-backend models that run
trtbuild's pre/post-processing inside Triton, a client, and a local ``tritonserver`` from the PyPI wheel."""
