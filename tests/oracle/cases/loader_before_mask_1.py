# gpufix-oracle: policy=1
import os
def load_backend():
    import torch
    return torch
torch = load_backend()
os.environ["CUDA_VISIBLE_DEVICES"] = "1"
torch.cuda.set_device(0)
