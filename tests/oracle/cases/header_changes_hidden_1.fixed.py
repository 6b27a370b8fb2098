# gpufix-oracle: policy=2,3
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"

import torch
torch.cuda.set_device(1)
y = torch.zeros(1).to("cuda:3")
