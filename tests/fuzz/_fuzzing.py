"""What the four fuzz harnesses share: the atheris entry point and a reproducible RNG.

Each harness (fuzz_http.py, fuzz_frames.py, fuzz_template.py, fuzz_config.py) has a
``one_input(data: bytes)`` that returns normally or raises AssertionError when an invariant
breaks.  It needs nothing from atheris, so tests/fuzz/test_fuzz.py replays the committed
corpus and crash files through it even where atheris is not installed.

The inputs stay plain: an HTTP head, WebSocket frames, a TOML file.  The knobs a harness
also needs (a split point, a chunking, a size limit) come from ``rng_for(data)``, a
random.Random seeded with a CRC of the input - so a corpus file is readable on its own and a
crash file replays exactly, with no parameter bytes glued to its front.
"""

import inspect
import random
import sys
import zlib
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
GOGIN_DIR = FUZZ_DIR.parents[1] / "gogin"


def rng_for(data: bytes) -> random.Random:
    return random.Random(zlib.crc32(data))


def main(one_input) -> None:
    """``python tests/fuzz/fuzz_X.py [corpus_dir...] [-libfuzzer_flag=...]``: fuzz one_input.

    Coverage feedback comes from Python code only (the harness, its reference models,
    gogin's Python modules): the Cython core is not built with libFuzzer's instrumentation,
    so the seed corpus carries the structure the mutator starts from.
    """
    import atheris

    _instrument(atheris)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


def _instrument(atheris) -> None:
    # The harness, its helpers and gogin's Python modules, loaded by now.  Not
    # atheris.instrument_all(): it also instruments the standard library (3,000 functions,
    # 20 s of start-up - as long as a whole CI fuzz run) for feedback we do not need.
    roots = (str(FUZZ_DIR), str(GOGIN_DIR))
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if not (path.endswith(".py") and path.startswith(roots)):
            continue
        for obj in list(vars(module).values()):
            if getattr(obj, "__module__", None) != module.__name__:
                continue                       # imported from elsewhere
            if inspect.isfunction(obj):
                atheris.instrument_func(obj)
            elif inspect.isclass(obj):
                for attr in vars(obj).values():
                    if inspect.isfunction(attr):
                        atheris.instrument_func(attr)
