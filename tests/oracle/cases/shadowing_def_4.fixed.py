# gpufix-oracle: policy=1
"""Train the model on one GPU."""
import os as o
o.environ.setdefault("CUDA_VISIBLE_DEVICES", "0,1"); from torch.cuda import set_device
o.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
def run1():
    set_device(3)
run1()
value2 = 2 * 2  # plain code
def set_device(i):
    print("own set_device", i)
set_device(1)
