# gpufix-oracle: policy=1
from os import environ
import torch
environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
environ["CUDA_VISIBLE_DEVICES"] = "1"
x = torch.zeros(1).to("cuda:1")
