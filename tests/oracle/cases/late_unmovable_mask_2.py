# gpufix-oracle: policy=1
import os
import torch
try:
    os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"
except KeyError:
    pass
torch.cuda.set_device(1)
