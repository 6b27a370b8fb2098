# gpufix-oracle: policy=1
import os

os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
os.environ["CUDA_VISIBLE_DEVICES"] = "1"

import tensorflow as tf
with tf.device("/GPU:0"):
    a = tf.constant(1)
b = tf.device("/device:GPU:0")
