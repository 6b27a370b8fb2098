# gpufix-oracle: policy=1
from os import environ
import ctranslate2
def setup():
    environ["CUDA_VISIBLE_DEVICES"] = "1"
setup()
g = ctranslate2.Generator("m", device="cuda", device_index=0)
