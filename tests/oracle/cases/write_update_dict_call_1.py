# gpufix-oracle: policy=1
import os
os.environ.update(dict(CUDA_VISIBLE_DEVICES="0"))
import torch
x = torch.zeros(1).to("cuda:0")
