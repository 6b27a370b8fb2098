# gpufix-oracle: policy=1
import os
os.environ |= {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1"}
import torch
torch.cuda.set_device(0)
