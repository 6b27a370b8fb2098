"""Run-time enforcement of the policy: `gpufix run`, the virtual-environment guard, the pytest plugin.

The static half (scan / apply) puts a header into files gpufix can read; this half pins processes
whose code it cannot read (launchers, notebooks, computed masks, tomorrow's script). Nothing here
imports torch; `gpufix run` reads NVML through the probe seam of gpufix.hardware.
"""
