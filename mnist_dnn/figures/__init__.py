"""The figures drawn from run directories."""
