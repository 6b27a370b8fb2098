# gpufix-oracle: policy=2,3
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "2,3"

from torch.cuda import set_device as pick
pick(0)
def pick(i):
    print("own set_device", i)
pick(3)
