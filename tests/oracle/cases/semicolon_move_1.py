# gpufix-oracle: policy=1
import os
import torch; os.environ["CUDA_VISIBLE_DEVICES"] = "1"; print("after")
torch.cuda.set_device(1)
