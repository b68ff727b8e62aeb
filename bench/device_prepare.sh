#!/usr/bin/env bash
# Prepares .dev/ (ignored by git) for bench/device_check.py on a lent GPU machine, which has JAX but not
# Keras, cannot reach a package index, and gets only the repository: Keras and its two missing pure
# dependencies as wheels for its Python 3.12, MNIST gzipped (12 MB, under the 64 MiB a call may carry),
# and the code from before bundles used CPU devices (fc4a30a) to time against. Prints the command to run there.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_COMMIT=fc4a30a  # main before the cores work merged (its first parent): vmap was already the GPU path
grep -qx '/.dev/' .git/info/exclude || echo '/.dev/' >>.git/info/exclude
rm -rf .dev && mkdir -p .dev/whl .dev/mnist .dev/base
pinned() { grep -i "^$1==" constraints.txt; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
	-d .dev/whl "$(pinned keras)" "$(pinned namex)" "$(pinned optree)"
.venv/bin/mnist-dnn fetch >/dev/null
cache=$(.venv/bin/python -c 'from mnist_dnn.data.mnist import default_cache_dir; print(default_cache_dir())')
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
	gzip -c "$cache/$name" >".dev/mnist/$name.gz"
done
git archive "$BASE_COMMIT" mnist_dnn | tar -x -C .dev/base
du -sh .dev
cat <<'COMMAND'
run(carry=[".dev"], timeout_s=500) with:
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .dev/whl/*.whl && export PYTHONPATH=/tmp/site || exit 1; mkdir -p /tmp/mnist && for f in .dev/mnist/*.gz; do gunzip -c $f > /tmp/mnist/$(basename $f .gz); done; export MNIST_DNN_DATA=/tmp/mnist PYTHONUNBUFFERED=1; nvidia-smi --query-gpu=name,memory.used --format=csv; python3 -c "import jax, keras; print(jax.__version__, keras.__version__, jax.devices())"; python3 bench/device_check.py --out $OUT --base .dev/base --budget 420 --scratch /tmp/dc
COMMAND
