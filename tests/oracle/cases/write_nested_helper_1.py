# gpufix-oracle: policy=1
import os
def configure():
    def pin():
        env = os.environ
        env.update({"CUDA_VISIBLE_DEVICES": "0"})
    pin()
configure()
import torch
torch.cuda.set_device(0)
