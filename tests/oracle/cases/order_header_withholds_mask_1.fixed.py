# gpufix-oracle: policy=2,3
"""Multi-line

docstring."""
from __future__ import annotations

import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"

value0 = 0
import os as _os
from transformers import pipeline, AutoModel
if not value0:
    pass
else:
    _os.environ['CUDA_DEVICE_ORDER'] = 'PCI_BUS_ID'
print("step 1")
if True:
    print("step 2")
def run3():
    pipe3 = pipeline("asr", device="cuda:" "1")
run3()
if __name__ == "__main__":
    _os.environ['CUDA_VISIBLE_DEVICES'] = '3'
    model4 = AutoModel.from_pretrained("m", device_map={"": 3})
