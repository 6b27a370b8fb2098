# gpufix-oracle: policy=1
from os import environ
env = environ
env.setdefault("CUDA_VISIBLE_DEVICES", "0")
import torch
torch.cuda.set_device(0)
