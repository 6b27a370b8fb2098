# gpufix-oracle: policy=1,0
import os
os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"
import torch
decoder = torch.zeros(1).to("cuda:1")
