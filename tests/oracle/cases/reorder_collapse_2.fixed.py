# gpufix-oracle: policy=1,0
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"

import torch
encoder = torch.zeros(1).to("cuda:0")
decoder = torch.zeros(1).to("cuda:1")
