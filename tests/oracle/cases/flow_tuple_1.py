# gpufix-oracle: policy=1
import torch
first, gpu = 0, 1
x = torch.zeros(1).to(f"cuda:{gpu}")
