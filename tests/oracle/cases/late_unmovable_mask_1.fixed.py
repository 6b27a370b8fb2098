# gpufix-oracle: policy=1
import os
os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"
from numba import cuda
cuda.select_device(1)
if __name__ == "__main__":
    os.environ["CUDA_VISIBLE_DEVICES"] = "1"
    cuda.select_device(1)
