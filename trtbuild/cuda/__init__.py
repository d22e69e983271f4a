"""Everything that talks to CUDA: the driver probe (ctypes), pycuda contexts, buffers, the executor, CUDA graphs,
the GPU letterbox kernel; plus ``plan``, the pure-Python buffer planning they follow. Nothing else imports pycuda."""
