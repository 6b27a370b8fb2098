# gpufix-oracle: policy=2,3
from os import environ as ENV
import transformers; ENV["CUDA_DEVICE_ORDER"] = "FASTEST_FIRST"
pipe = transformers.pipeline("asr", device="cuda:3")
