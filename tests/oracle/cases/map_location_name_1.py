# gpufix-oracle: policy=1
import torch
loc = {"cuda:1": "cuda:1"}
m = torch.load("m.pt", map_location=loc)
