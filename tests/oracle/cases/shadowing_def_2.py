# gpufix-oracle: policy=2,3
from torch.cuda import set_device as pick
pick(2)
def pick(i):
    print("own set_device", i)
pick(3)
