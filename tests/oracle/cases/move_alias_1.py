# gpufix-oracle: policy=1
import torch
import os as o
o.environ["CUDA_VISIBLE_DEVICES"] = "1"
torch.cuda.set_device(1)
