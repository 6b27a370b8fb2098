# gpufix-oracle: policy=1
import os
os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ.update(dict(CUDA_VISIBLE_DEVICES="1"))
import torch
x = torch.zeros(1).to("cuda:0")
