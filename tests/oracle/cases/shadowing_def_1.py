# gpufix-oracle: policy=1
from torch.cuda import set_device
def set_device(i):
    print("own set_device", i)
set_device(1)
