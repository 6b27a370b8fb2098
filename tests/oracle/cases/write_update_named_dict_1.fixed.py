# gpufix-oracle: policy=1
import os
GPU_SETTINGS = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1"}
os.environ.update(GPU_SETTINGS)
import torch
torch.cuda.set_device(0)
