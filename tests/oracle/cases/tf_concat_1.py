# gpufix-oracle: policy=1
import tensorflow as tf
with tf.device("/GPU:" "1"):
    a = tf.constant(1)
b = tf.device("/device:GPU:1")
