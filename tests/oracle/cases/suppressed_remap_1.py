# gpufix-oracle: policy=1
import torch
torch.cuda.set_device(1)  # gpufix: ignore[GPU001]
x = torch.zeros(1).to("cuda:1")  # noqa: GPU001
