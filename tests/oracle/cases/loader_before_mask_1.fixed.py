# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

def load_backend():
    import torch
    return torch
torch = load_backend()
torch.cuda.set_device(0)
