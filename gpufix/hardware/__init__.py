"""`gpufix check` / `gpufix init`: the post-fix hardware check.

Nothing here imports pynvml or torch at import time; only the functions of the probe seam
(`gpufix.hardware.probe.RealProbe`, the child process and the smoke kernel) do.
"""
