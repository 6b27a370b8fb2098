# gpufix-oracle: policy=1
from __future__ import annotations; import torch
torch.cuda.set_device(1)
