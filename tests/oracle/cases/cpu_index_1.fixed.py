# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

import torch
a = torch.device(type="cpu", index=1)
b = torch.device("cpu", index=1)
c = torch.device(type="cuda", index=0)
