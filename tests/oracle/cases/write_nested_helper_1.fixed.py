# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

def configure():
    def pin():
        env = os.environ
        env.update({"CUDA_VISIBLE_DEVICES": "1"})
    pin()
configure()
import torch
torch.cuda.set_device(0)
