# gpufix-oracle: policy=1
import os
env = os.environ
env["CUDA_VISIBLE_DEVICES"] = "0"
import torch
torch.cuda.set_device(0)
