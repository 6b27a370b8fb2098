# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

import torch
try:
    os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"
except KeyError:
    pass
torch.cuda.set_device(1)
