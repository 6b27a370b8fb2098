# gpufix-oracle: policy=1
import torch
(gpu := 1)
torch.cuda.set_device(gpu)
if (other := 1) is not None:
    x = torch.zeros(1).to(f"cuda:{other}")
