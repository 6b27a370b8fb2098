# gpufix-oracle: policy=1
import os, torch
torch.cuda.set_device(1)
