# gpufix-oracle: policy=0
from __future__ import annotations
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
