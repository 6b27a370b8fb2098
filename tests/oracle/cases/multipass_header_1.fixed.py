# gpufix-oracle: policy=2,3
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "2,3"

from os import environ as ENV
import transformers
pipe = transformers.pipeline("asr", device="cuda:1")
