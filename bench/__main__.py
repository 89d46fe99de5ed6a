"""`python -m bench` (or `make bench`): run every benchmark module's `main()`."""

import importlib
import pkgutil
import sys

import bench

wanted = set(sys.argv[1:])
for module in pkgutil.iter_modules(bench.__path__):
    if module.name.startswith("_") or (wanted and module.name not in wanted):
        continue
    print(f"== bench.{module.name}", flush=True)
    importlib.import_module(f"bench.{module.name}").main()
