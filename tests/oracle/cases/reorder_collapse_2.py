# gpufix-oracle: policy=1,0
import torch
encoder = torch.zeros(1).to("cuda:0")
decoder = torch.zeros(1).to("cuda:1")
