# gpufix-oracle: policy=1
import os
SETTINGS = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1"}
for key, value in SETTINGS.items():
    os.environ[key] = value
import torch
torch.cuda.set_device(0)
