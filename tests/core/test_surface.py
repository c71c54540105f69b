"""The public surface of gogin._core: the names it exports and the stubs that type them.

`gogin/_core/__init__.pyi` must name exactly what the package exports, each class's public
members included, with the compiled functions' parameters: a name added to the core without
its stub, or a stub left behind after a removal, fails here.  The stub's attributes say which
members Python may assign (a plain annotation) and which it may only read (a property); the
compiled classes are checked for the same on live objects.  Python code outside `_core` imports
`gogin._core` only, never its submodules (tests excepted).
"""

import ast
import enum
import inspect
import os
import pathlib
import re
import socket
import subprocess
import sys
import types

import pytest
from gogin._core.http import parse

import gogin
import gogin._core as core

STUB = pathlib.Path(core.__file__).with_name("__init__.pyi")
PACKAGE = pathlib.Path(gogin.__file__).parent
TREE = ast.parse(STUB.read_text(), filename=str(STUB))


def _public(name):
    return not name.startswith("_")


def _decorators(node):
    return {d.id if isinstance(d, ast.Name) else getattr(d, "attr", None)
            for d in node.decorator_list}


def _stub_names(body):
    """{name: [nodes]} of the public definitions in a stub body (overloads share a name)."""
    out = {}
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names = [node.name]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        else:
            continue
        for name in names:
            if _public(name):
                out.setdefault(name, []).append(node)
    return out


STUB_TOP = _stub_names(TREE.body)
STUB_CLASSES = {name: nodes[0] for name, nodes in STUB_TOP.items()
                if isinstance(nodes[0], ast.ClassDef)}


def _own_members(cls):
    """Public names a compiled class defines itself (not inherited from its bases)."""
    inherited = set()
    for base in cls.__mro__[1:]:
        inherited.update(dir(base))
    return {n for n in dir(cls) if _public(n) and n not in inherited}


# -- the exports -----------------------------------------------------------------------------

def test_all_is_the_export_table():
    assert len(core.__all__) == len(set(core.__all__))
    assert set(core.__all__) == set(core._EXPORTS)


@pytest.mark.parametrize("name", core.__all__)
def test_every_export_imports(name):
    value = getattr(core, name)
    assert value is not None
    # each name comes from the submodule the table says (a renamed import there shows here)
    module = sys.modules[f"gogin._core.{core._EXPORTS[name]}"]
    assert getattr(module, name) is value


def test_star_import_in_a_fresh_interpreter():
    # a fresh process: nothing resolved lazily yet, as for a user's first import
    code = ("from gogin._core import *\n"
            "print(' '.join(sorted(k for k in dir() if not k.startswith('_'))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60).stdout.split()
    assert out == sorted(core.__all__)


def test_star_import():
    ns = {}
    exec("from gogin._core import *", ns)  # noqa: S102 (a star import is what is tested)
    assert {k for k in ns if _public(k)} == set(core.__all__)


def test_dir_lists_the_surface():
    names = dir(core)
    assert set(core.__all__) <= set(names)
    # the public attributes are the surface and the compiled submodules the imports left
    extra = {n for n in names if _public(n) and n not in core.__all__
             and not isinstance(getattr(core, n), types.ModuleType)}
    assert extra == set()


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        core.nope  # noqa: B018


# -- the stubs -------------------------------------------------------------------------------

def test_stub_names_exactly_the_exports():
    assert set(STUB_TOP) == set(core.__all__)


def test_stub_all_is_the_runtime_all():
    (node,) = [n for n in TREE.body if isinstance(n, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
    assert ast.literal_eval(node.value) == core.__all__


def test_stub_kinds():
    for name, nodes in STUB_TOP.items():
        value = getattr(core, name)
        node = nodes[0]
        if isinstance(node, ast.ClassDef):
            assert isinstance(value, type), name
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert callable(value) and not isinstance(value, type), name
        else:
            assert not callable(value), name


@pytest.mark.parametrize("name", sorted(STUB_CLASSES))
def test_stub_class_members(name):
    stub = set(_stub_names(STUB_CLASSES[name].body))
    assert stub == _own_members(getattr(core, name))


@pytest.mark.parametrize("name", sorted(n for n in STUB_CLASSES
                                         if not issubclass(getattr(core, n), enum.Enum)))
def test_stub_final_is_runtime_final(name):
    # (an Enum with members is final by itself, for Python and type checkers alike)
    cls = getattr(core, name)
    try:
        type("Sub", (cls,), {})
        subclassable = True
    except TypeError:
        subclassable = False
    assert ("final" in _decorators(STUB_CLASSES[name])) == (not subclassable)


def _stub_params(fn):
    """[(name, kind, default)] of a stub function; default is inspect.Parameter.empty or the
    value of the default expression."""
    a = fn.args
    out = []
    positional = a.posonlyargs + a.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(a.defaults)) + [
        eval(compile(ast.Expression(d), str(STUB), "eval")) for d in a.defaults]
    for i, arg in enumerate(positional):
        kind = (inspect.Parameter.POSITIONAL_ONLY if arg in a.posonlyargs
                else inspect.Parameter.POSITIONAL_OR_KEYWORD)
        out.append((arg.arg, kind, defaults[i]))
    if a.vararg:
        out.append((a.vararg.arg, inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.empty))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append((arg.arg, inspect.Parameter.KEYWORD_ONLY,
                    inspect.Parameter.empty if d is None
                    else eval(compile(ast.Expression(d), str(STUB), "eval"))))
    if a.kwarg:
        out.append((a.kwarg.arg, inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty))
    return out


def _runtime_params(sig):
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def _same(stub, runtime, kinds=True):
    # defaults compare by value and type: 0 for a double parameter (0.0) is a stub error
    if len(stub) != len(runtime):
        return False
    return all(s[0] == r[0] and (s[1] == r[1] or not kinds) and s[2] == r[2]
               and type(s[2]) is type(r[2]) for s, r in zip(stub, runtime))


_EMBEDDED = re.compile(r"^\w+\((.*)\)\s*$")


def _embedded_params(cls):
    """Constructor parameters from the signature Cython embeds in a class docstring
    (embedsignature), e.g. ``Hub(on_request=None, Py_ssize_t max_connections=10000, ...)``.
    Names and defaults only: Cython 3.3 writes the ``*`` of keyword-only parameters one
    parameter late there (Hub's says max_connections is positional; it is not)."""
    m = _EMBEDDED.match((cls.__doc__ or "").split("\n", 1)[0])
    if m is None:
        return None
    out, kind = [], inspect.Parameter.POSITIONAL_OR_KEYWORD
    for part in filter(None, (p.strip() for p in m.group(1).split(","))):
        if part == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        decl, _, default = part.partition("=")
        value = eval(default) if default else inspect.Parameter.empty
        out.append((decl.split()[-1], kind, value))
    return out


def _functions():
    """(qualified name, stub node, runtime object) of every public stub function and method,
    constructors included."""
    for name, nodes in STUB_TOP.items():
        node = nodes[0]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield name, nodes, getattr(core, name)
        elif isinstance(node, ast.ClassDef):
            cls = getattr(core, name)
            for mname, mnodes in _stub_names(node.body).items():
                if isinstance(mnodes[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{name}.{mname}", mnodes, cls.__dict__.get(mname)
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef) and sub.name in ("__init__", "__new__"):
                    yield f"{name}.{sub.name}", [sub], cls


FUNCTIONS = {q: (nodes, obj) for q, nodes, obj in _functions()}


@pytest.mark.parametrize("qualname", sorted(FUNCTIONS))
def test_stub_signature(qualname):
    nodes, obj = FUNCTIONS[qualname]
    node = nodes[0]
    if "property" in _decorators(node):
        # a compiled attribute or @property: a descriptor, not a method
        assert obj is not None and not callable(obj), qualname
        return
    if qualname.endswith(("__init__", "__new__")):
        runtime = _embedded_params(obj)
        if runtime is None:
            pytest.skip(f"{obj.__name__}'s constructor signature is not introspectable")
        stub = _stub_params(node)[1:]          # without self / cls
        assert _same(stub, runtime, kinds=False), (qualname, stub, runtime)
        return
    assert callable(obj), qualname
    runtime = _runtime_params(inspect.signature(obj))
    if "overload" in _decorators(node):
        # every overload is a call the function accepts: its names, in order, from the real one
        names = [r[0] for r in runtime]
        for n in nodes:
            params = [p[0] for p in _stub_params(n)]
            assert params == names[:len(params)], (qualname, params, names)
        return
    assert _same(_stub_params(node), runtime), (qualname, _stub_params(node), runtime)
    assert isinstance(node, ast.AsyncFunctionDef) == inspect.iscoroutinefunction(obj), qualname


# -- assignable or read-only, on live objects ------------------------------------------------

@pytest.fixture(scope="module")
def live():
    """One object of every exported class (the enums and the exception excepted)."""
    hub = core.Hub()
    a, b = socket.socketpair()
    conn = hub.adopt(os.dup(a.fileno()))
    objects = {
        "Hub": hub, "Connection": conn, "Format": hub.format("eventsource"),
        "Channel": hub.ensure_channel("surface"), "Selector": core.Selector(),
        "Request": parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[1],
    }
    yield objects
    objects["Selector"].close()
    hub.close()
    a.close()
    b.close()


def _attributes():
    for cname, cnode in STUB_CLASSES.items():
        for name, nodes in _stub_names(cnode.body).items():
            node = nodes[0]
            if isinstance(node, ast.AnnAssign):
                yield cname, name, True
            elif isinstance(node, ast.FunctionDef) and "property" in _decorators(node):
                yield cname, name, False


@pytest.mark.parametrize("cname,name,writable", sorted(_attributes()))
def test_stub_attribute_access(live, cname, name, writable):
    obj = live[cname]
    value = getattr(obj, name)
    if writable:
        setattr(obj, name, value)
    else:
        with pytest.raises(AttributeError):
            setattr(obj, name, value)


# -- the rule: the Python layer imports gogin._core, never its submodules ---------------------

def test_no_core_submodule_imports_outside_core():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if PACKAGE / "_core" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
                if node.module == "gogin._core":
                    names = []            # `from gogin._core import X`: the surface
                elif node.module == "gogin":
                    names = [f"gogin.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            offenders += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {n}"
                          for n in names if n.startswith("gogin._core.")]
    assert offenders == []
