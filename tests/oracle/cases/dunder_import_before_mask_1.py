# gpufix-oracle: policy=1
import os
tf = __import__("tensorflow")
os.environ["CUDA_VISIBLE_DEVICES"] = "1"
print(tf.constant(1))
