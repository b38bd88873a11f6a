"""The pipeline's stages, one module each, run by dvc.yaml as `python -m stages.<name>`.

Python imports this package before the stage's module, whose imports (torch, fastai, dvclive)
make some 390,000 objects; on the way, Python's cyclic garbage collector walks them again and
again, a fifth of the CPU a stage takes to start (docs/speed.md). So in a stage's own process
(`python -m` sets sys.argv[0] to "-m" while it imports the package) the collector stays off
until digits.cli.run, where every stage ends up: it freezes what the imports made and turns the
collector back on. A test or notebook that imports a stage keeps its collector.
"""

import gc
import sys

if sys.argv[:1] == ["-m"]:
    gc.disable()
