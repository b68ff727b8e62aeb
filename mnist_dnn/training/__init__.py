"""The paper's pipeline for one model: build, compile, train (fit or fused), monitor, checkpoint, evaluate."""
