# gpufix-oracle: policy=1
import importlib
import os
torch = importlib.import_module("torch")
os.environ["CUDA_VISIBLE_DEVICES"] = "1"
torch.cuda.set_device(0)
