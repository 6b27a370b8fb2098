# gpufix-oracle: policy=2,3
from __future__ import annotations
value0 = 0
from os import environ as ENV, putenv as put
from torch.cuda import set_device as pick
if True:
    pick(1)
def pick(i):
    print("own set_device", i)
pick(1)
pick(1)  # gpufix: ignore[GPU001]
if __name__ == "__main__":
    ENV.setdefault("CUDA_VISIBLE_DEVICES", "2,3")
    print("step 4")
