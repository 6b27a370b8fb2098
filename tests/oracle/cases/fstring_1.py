# gpufix-oracle: policy=1
import torch
x = torch.zeros(1).to(f"cuda:1")
y = torch.zeros(1, device=rf"cuda:1")
