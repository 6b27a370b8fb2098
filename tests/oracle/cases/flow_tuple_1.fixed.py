# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

import torch
first, gpu = 0, 0
x = torch.zeros(1).to(f"cuda:{gpu}")
