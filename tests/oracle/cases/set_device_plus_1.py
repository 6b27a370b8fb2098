# gpufix-oracle: policy=1
import torch
torch.cuda.set_device(+1)
