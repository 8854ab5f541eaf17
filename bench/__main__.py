"""`python -m bench [name ...]`: run the `main()` of every bench_*.py module here (or those named)."""

import importlib
import sys
from pathlib import Path


def main(names: list[str]) -> None:
    """Run the chosen benchmark modules in name order."""
    found = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    for name in names or found:
        module = importlib.import_module(
            f"bench.{name if name.startswith('bench_') else 'bench_' + name}"
        )
        print(f"== {module.__name__}", flush=True)
        module.main()


main(sys.argv[1:])
