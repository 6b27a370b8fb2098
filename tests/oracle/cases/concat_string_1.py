# gpufix-oracle: policy=1
import torch
x = torch.zeros(1).to("cuda:" "1")
y = torch.zeros(1).to("cu" f"da:1")
