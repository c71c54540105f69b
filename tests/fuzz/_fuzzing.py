"""What the four fuzz harnesses share: the atheris entry point, a reproducible RNG and
outcome features (see ``feature``).

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


# -- outcome features ---------------------------------------------------------------------------
# atheris sees the edges of Python code only, and the Cython core is compiled C: an input that
# takes the parser down a new path looks like any other unless the harness branches on what
# came out.  feature(name) does that: a CRC of the name picks one of TREES generated functions
# and, in it, one leaf of a binary tree of ifs TREE_BITS deep - a code edge of its own for each
# outcome the harness names ("400 Bare LF in request head.", "header content-length", ...), so
# inputs reaching new outcomes stay in the fuzzer's corpus.  (Two names may share a leaf; it
# only costs a little guidance.)  Many small trees, not one big one: atheris takes seconds to
# instrument a single function with a thousand branches.

TREES, TREE_BITS = 32, 5


def _tree_source(name: str, bits: int) -> str:
    lines = [f"def {name}(n):"]

    def node(lo, hi, depth):
        pad = "    " * depth
        if hi - lo == 1:
            lines.append(f"{pad}return {lo}")
            return
        mid = (lo + hi) // 2
        lines.append(f"{pad}if n < {mid}:")
        node(lo, mid, depth + 1)
        lines.append(f"{pad}else:")
        node(mid, hi, depth + 1)

    node(0, 1 << bits, 1)
    return "\n".join(lines) + "\n"


def _make_trees():
    trees = []
    for i in range(TREES):
        scope = {"__name__": __name__}
        exec(compile(_tree_source(f"_tree{i}", TREE_BITS), f"{__file__}:tree{i}", "exec"), scope)
        trees.append(scope[f"_tree{i}"])
    return trees


_TREES = _make_trees()


def feature(name: str) -> None:
    n = zlib.crc32(name.encode("utf-8", "surrogateescape"))
    _TREES[(n >> TREE_BITS) % TREES](n & ((1 << TREE_BITS) - 1))


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
    # 20 s of start-up - longer than a CI fuzz run) for feedback we do not need.
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
    for tree in _TREES:                        # held in a list, not by a module name
        atheris.instrument_func(tree)
