# gpufix-oracle: policy=1
import os
os.environ.__setitem__("CUDA_VISIBLE_DEVICES", "0")
import torch
torch.cuda.set_device(0)
