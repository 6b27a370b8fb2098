# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

from os import environ
import ctranslate2
def setup():
    environ["CUDA_VISIBLE_DEVICES"] = "1"
setup()
g = ctranslate2.Generator("m", device="cuda", device_index=0)
