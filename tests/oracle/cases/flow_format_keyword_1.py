# gpufix-oracle: policy=1
import torch
gpu = 1
x = torch.zeros(1).to("cuda:{i}".format(i=gpu))
y = torch.device("cuda:{}".format(1))
