# gpufix-oracle: policy=0
from __future__ import annotations

import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "0"

import os as o
from torch.cuda import set_device as pick
def run1():
    pick(3)
run1()
if True:
    print("step 2")
def pick(i):
    print("own set_device", i)
pick(2)
def run4():
    print("step 4")
run4()
