"""Your own handwriting: digit photos and CSVs read into MNIST-like images, and digit sets."""
