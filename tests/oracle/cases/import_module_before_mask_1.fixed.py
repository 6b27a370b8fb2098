# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

import importlib
torch = importlib.import_module("torch")
torch.cuda.set_device(0)
