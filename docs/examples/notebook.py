# %% [markdown]
# # mnist-dnn in a notebook
#
# Train a short run, read it back, let it read the paper's five handwritten digits and the MNIST
# test set, and draw figure 6. Run it cell by cell (Jupyter, VS Code: the `# %%` lines are cells)
# or whole, from the repository's top folder: `python docs/examples/notebook.py`.
# The test suite runs it too (tests/test_api.py).

# %%
from mnist_dnn import load_run, plot_history, predict, train

# configs/paper.toml on 2,000 training images for one epoch: a minute on a laptop.
result = train("paper", {"data.train_limit": 2000}, epochs=1, seed=0, name="notebook")
print(result.run_dir)
print(f"test accuracy {result.metrics['test_accuracy']:.4f}, test loss {result.metrics['test_loss']:.4f}")

# %%
run = load_run(result.run_dir)  # history.csv, metrics.json and config.toml; the model on first use
print(run.history[["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]].round(4).to_string(index=False))
print(f"{run.config.optimizer.name}, learning rate {run.config.optimizer.learning_rate}, {len(run.history)} epoch")

# %% [markdown]
# The five digits of section 5.2.2 (custom_digits/: 3, 8, 9, 5, 4), read as `mnist-dnn predict` reads them.

# %%
custom = predict(run, ["custom_digits"])
for name, digit, p in zip(custom.names, custom.digits, custom.probabilities, strict=True):
    print(f"{name}: {digit} ({p.max():.2f})")

# %% [markdown]
# Arrays work too: raw pixels 0-255, shape (N, 28, 28) or (N, 784), as MNIST's own arrays are.

# %%
from mnist_dnn.data.mnist import load_mnist  # noqa: E402

mnist = load_mnist()
read = predict(run, mnist.x_test)
accuracy = float((read.digits == mnist.y_test).mean())
print(f"{accuracy:.4f} of the {len(mnist.y_test)} test images read right")

# %%
figure = plot_history(run)  # figure 6: accuracy and loss per epoch; a notebook shows it
figure
