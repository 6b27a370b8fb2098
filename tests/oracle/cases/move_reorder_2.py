# gpufix-oracle: policy=1
import os
import torch
os.environ["CUDA_VISIBLE_DEVICES"] = "0"
os.environ["CUDA_VISIBLE_DEVICES"] = "1,0"
x = torch.zeros(1).to("cuda:1")
