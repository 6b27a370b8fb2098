# gpufix-oracle: policy=1
from os import environ
env = environ
env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
env.setdefault("CUDA_VISIBLE_DEVICES", "1")
import torch
torch.cuda.set_device(0)
