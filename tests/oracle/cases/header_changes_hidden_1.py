# gpufix-oracle: policy=2,3
import torch
torch.cuda.set_device(1)
y = torch.zeros(1).to("cuda:3")
