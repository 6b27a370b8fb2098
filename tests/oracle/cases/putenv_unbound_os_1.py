# gpufix-oracle: policy=1
from os import putenv
putenv("CUDA_VISIBLE_DEVICES", "1")
import torch
torch.cuda.set_device(0)
