"""Measurements that need a GPU session (``python -m benchmarks.gpu.NAME --device cuda``): the
codec and the training and bound speed on a device; kept apart because they cannot run on the
CPU-only machines that produce the other reports (each has a CPU smoke test)."""
