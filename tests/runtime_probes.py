"""GPUFIX_PROBE factories for run-time tests that start real processes (`gpufix run` in a subprocess):
`GPUFIX_PROBE=runtime_probes:from_env` with GPUFIX_TEST_MACHINE naming one of realstack's machines.
The subprocess needs tests/ on PYTHONPATH."""

import os

import realstack

MACHINES = {
    "user": realstack.user_machine,  # RTX 5060 Ti 16 GB (bus 0) + RTX 3090 24 GB (bus 1)
    "a100-mig": lambda: realstack.a100_80gb(mig=True),  # two MIG instances of 39.25 GiB
    "gb10": realstack.dgx_spark,  # unified memory: NVML reports no memory size
    "no-nvml": lambda: realstack.Machine(gpus=[], nvml_library=False),
}


def from_env():
    return realstack.RealStackProbe(MACHINES[os.environ["GPUFIX_TEST_MACHINE"]]())
