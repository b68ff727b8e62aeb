"""`python -m mnist_dnn` is the same as the `mnist-dnn` command."""

from mnist_dnn.cli.launch import main

main()
