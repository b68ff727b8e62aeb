"""mnist-dnn: the Keras MNIST experiment of "Deep Learning Basics: An Overview", reproducible."""

__version__ = "0.1.0"
