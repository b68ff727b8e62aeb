"""The run directory and the files written into it: status and locks, file names, outputs, TensorBoard."""
