# Everything a fresh machine needs: `make train` (set-up + the paper's run) and `make test`;
# `make test-fast` is the lane to run on every save (no model built, no MNIST read, no subprocess).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/paper.toml
TRAIN_ARGS ?=
PYTEST_ARGS ?=
# `make test` runs its files in this many processes (pytest-xdist; each file stays in one process,
# so a file's module fixtures are built once): 2 halves the suite's time on a 2-core machine.
# Each process holds its own TensorFlow/JAX (about 2 GiB); raise it on a machine with more cores.
TEST_WORKERS ?= 2

.PHONY: install data train test test-fast lint lock clean bench browser postgresql screenshots docs

install: $(VENV)/.installed

# Re-runs only when the project or its pins change; the stamp makes `make install` idempotent.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,docs,all]'
	touch $@

data: install
	$(BIN)/mnist-dnn fetch

train: data
	$(BIN)/mnist-dnn train --config $(CONFIG) $(TRAIN_ARGS)

# MNIST is fetched by the first test that needs it (tests/conftest.py's `mnist` fixture), not before.
test: install browser postgresql
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The browser tests of `mnist-dnn serve` drive Debian's chromium through Playwright (Playwright's own
# browser download is not reachable). Installed when missing and apt can; otherwise those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } } \
		|| echo "No chromium and no way to install it: the browser tests will be skipped."

# The tests of `tune --storage postgresql://` start Debian's PostgreSQL server (initdb in a temporary directory,
# tests/postgres.py); its binaries live in /usr/lib/postgresql/VERSION/bin. Installed when missing and apt can;
# otherwise those tests skip.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
		|| { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } } \
		|| echo "No PostgreSQL and no way to install it: the PostgreSQL tests will be skipped."

# The docs' pictures of `mnist-dnn serve` (docs/serve/*.png): a short real training run, the page driven in chromium.
screenshots: data browser
	$(BIN)/python docs/serve/screenshots.py --out docs/serve

# Speed, not correctness: fit+tensorflow vs fit+jax vs fused+jax side by side, the matmul floor,
# six custom-digit runs together, tune trials side by side, LeNet-5 and batch norm against the paper's network per epoch (docs/models.md),
# and `mnist-dnn --help`; writes bench/results/<machine>.json.
BENCH_ARGS ?= --epochs 5 --runs 6
bench: data
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check mnist_dnn tests bench
	$(BIN)/ruff format --check mnist_dnn tests bench

# The manual (mkdocs.yml, docs/) as a site in build/site. Strict: a broken link or anchor, or a page missing
# from the nav, fails the build. Builds offline (no web fonts, no plugins that fetch).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir build/site

# Re-pin the whole stack from the current environment after a deliberate upgrade.
lock: install
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -iv '^mnist-dnn'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# The five digits of section 5.2.2 (3, 8, 9, 5, 4): pages drawn from fixed strokes and a fixed seed,
# then digitized MNIST-style; the result is byte-identical every time (tests/test_digits.py checks).
.PHONY: custom-digits
custom-digits: install
	$(BIN)/python custom_digits/make_pages.py custom_digits/source
	$(BIN)/mnist-dnn digitize $(addprefix custom_digits/source/,3.png 8.png 9.png 5.png 4.png) --out custom_digits --overwrite
