# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

from torch.cuda import set_device
def set_device(i):
    print("own set_device", i)
set_device(1)
