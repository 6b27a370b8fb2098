# gpufix-oracle: policy=1
import os
env = os.environ
env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
env["CUDA_VISIBLE_DEVICES"] = "1"
import torch
torch.cuda.set_device(0)
