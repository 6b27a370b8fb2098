# gpufix-oracle: policy=1
import os; import torch
torch.cuda.set_device(1)
