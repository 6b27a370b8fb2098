"""The seed-004 project's files (a module choosing GPU 1 and the script that runs it, under the
policy "1"), shared by the project-context and warm-run tests."""

import textwrap

POLICY = '[tool.gpufix]\nvisible-devices = "1"\ndevice-order = "PCI_BUS_ID"\ncpu-runs = "override"\n'
HEADER = 'import os\nos.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"\nos.environ["CUDA_VISIBLE_DEVICES"] = "1"\n'
VAD = textwrap.dedent("""\
    import torch


    def init():
        torch.cuda.set_device(1)
        return torch.zeros(1, device="cuda:1")
""")
MAIN = "from STT.vad_manager import init\n\nif __name__ == \"__main__\":\n    init()\n"
