"""Build the Cython core of gogin.

One Extension per .pyx under gogin/_core (uvloop / picows style).  Switches, read from the
environment at build time:

  GOGIN_DEBUG=1        -O0 -g, bounds checks and wraparound on, Cython line tracing off
  GOGIN_SANITIZE=1     like GOGIN_DEBUG plus ASan + UBSan (run tests with LD_PRELOAD=libasan)
  GOGIN_SELECTOR=name  default selector backend: epoll | kqueue | poll (others stay compiled
                       in for the contract tests, see native/config.h)
  GOGIN_EXT=a,b        build only these modules (e.g. GOGIN_EXT=frames,http) - handy while
                       working on one module
  GOGIN_ANNOTATE=1     write Cython's HTML annotation next to each .pyx (never committed)
"""

import glob
import os
import sys

from setuptools import Extension, setup

CORE = "gogin/_core"
MODULES = ["selector", "http", "frames", "buffers", "deflate", "history", "registry", "envelope",
           "formats", "responses", "pubroute", "replay", "connection", "timers", "fanout", "hub"]
LIBRARIES = {"deflate": ["z"]}      # zlib: permessage-deflate (RFC 7692)
BENCH = "gogin/bench"
BENCH_MODULES = ["_loadclient"]     # gogin-bench's C receive loop (cimports the core selector)


def flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "yes", "true", "on")


def extensions():
    debug = flag("GOGIN_DEBUG") or flag("GOGIN_SANITIZE")
    sanitize = flag("GOGIN_SANITIZE")
    only = [m.strip() for m in os.environ.get("GOGIN_EXT", "").split(",") if m.strip()]

    cflags, ldflags, macros = [], [], []
    if debug:
        # -UNDEBUG keeps C assert() live (the CPython headers' inline functions have some);
        # the checks of gogin's own code are Cython's directives below.  No GG_DEBUG macro:
        # nothing in native/ or the .pyx files would read one.
        cflags += ["-O0", "-g3", "-UNDEBUG"]
    else:
        cflags += ["-O2"]
    if sanitize:
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=undefined"]
        cflags += san
        ldflags += san
    cflags += ["-Wall", "-Wno-unused-function", "-Wno-unreachable-code",
               "-Wno-unused-variable", "-Wno-deprecated-declarations"]

    selector = os.environ.get("GOGIN_SELECTOR", "").strip().lower()
    if selector:
        if selector not in ("epoll", "kqueue", "poll"):
            sys.exit(f"GOGIN_SELECTOR must be epoll, kqueue or poll, not {selector!r}")
        macros.append((f"GG_USE_{selector.upper()}", "1"))

    exts = []
    for mod in MODULES:
        if only and mod not in only:
            continue
        sources = [f"{CORE}/{mod}.pyx"]
        if mod == "selector":
            sources.append(f"{CORE}/native/selector.c")
        exts.append(Extension(
            f"gogin._core.{mod}", sources,
            depends=sorted(glob.glob(f"{CORE}/*.pxd") + glob.glob(f"{CORE}/native/*")
                           + glob.glob(f"{CORE}/includes/*.pxd")
                           + glob.glob(f"{BENCH}/*.pxi")),
            include_dirs=[CORE, f"{CORE}/native"],
            libraries=LIBRARIES.get(mod, []),
            define_macros=macros,
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        ))

    for mod in BENCH_MODULES:
        if only and mod not in only:
            continue
        exts.append(Extension(
            f"gogin.bench.{mod}", [f"{BENCH}/{mod}.pyx"],
            depends=sorted(glob.glob(f"{CORE}/selector.pxd") + glob.glob(f"{CORE}/native/*.h")
                           + glob.glob(f"{CORE}/includes/*.pxd")
                           + glob.glob(f"{BENCH}/*.pxi")),
            include_dirs=[CORE, f"{CORE}/native"],
            define_macros=macros,
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        ))

    from Cython.Build import cythonize

    # A debug/sanitizer/release switch changes the generated C (bounds checks), so cythonize
    # must not reuse .c files made for another flavour: remember the flavour, force on change.
    flavour = f"debug={debug} sanitize={sanitize} selector={selector}"
    stamp = os.path.join("build", ".gogin-flavour")
    force = flag("GOGIN_FORCE")
    try:
        with open(stamp) as fh:
            force = force or fh.read() != flavour
    except OSError:
        force = True
    os.makedirs("build", exist_ok=True)
    with open(stamp, "w") as fh:
        fh.write(flavour)

    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,
        "embedsignature": True,
        "freethreading_compatible": False,
    }
    return cythonize(exts, compiler_directives=directives,
                     annotate=flag("GOGIN_ANNOTATE"),
                     force=force)


setup(ext_modules=extensions())
