# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

import torch
(gpu := 0)
torch.cuda.set_device(gpu)
if (other := 1) is not None:
    x = torch.zeros(1).to(f"cuda:{other}")
