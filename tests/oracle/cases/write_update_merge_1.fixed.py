# gpufix-oracle: policy=1
import os
BASE = {"OMP_NUM_THREADS": "1"}
os.environ.update(BASE | {"CUDA_VISIBLE_DEVICES": "1"}, CUDA_DEVICE_ORDER="PCI_BUS_ID")
import torch
torch.cuda.set_device(0)
