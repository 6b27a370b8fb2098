# gpufix-oracle: policy=1
import torch
import os
os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
torch.cuda.set_device(1)
