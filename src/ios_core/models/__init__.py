"""The model registry: the four networks of the IOS paper, the tiny ``demo`` and ``onnx`` files, by name.

Importing this package only defines functions; a graph is built when `get` is called.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin, get_type_hints

from ios_core.errors import UserError
from ios_core.ir import Graph
from ios_core.models.demo import demo
from ios_core.models.inception_v3 import inception_v3
from ios_core.models.nasnet import nasnet
from ios_core.models.randwire import randwire
from ios_core.models.squeezenet import squeezenet
from ios_core.weights import Params

Weights = dict[str, Params]


class ModelArgumentError(UserError):
    """A model was asked for with arguments it cannot use: the message names the model and the argument."""


def onnx(path: str | None = None) -> tuple[Graph, Weights]:
    """A network read from an ``.onnx`` file (`ios_core.onnx_io`): its graph and the file's own weights.

    A file that cannot be read or imported raises `ios_core.onnx_io.OnnxImportError`, naming the file
    or the node at fault.
    """
    from ios_core.onnx_io import load_onnx  # onnx is heavy to import: only when asked for

    if not path:
        raise ModelArgumentError("model=onnx needs the file: model.path=<network.onnx>")
    network = load_onnx(path)
    return network.graph, network.weights


# Networks read from a file rather than built here, with the file's weights: not in `names()`, since they need a path.
_LOADERS: dict[str, Callable[..., tuple[Graph, Weights]]] = {"onnx": onnx}

_MODELS: dict[str, Callable[..., Graph]] = {
    "demo": demo,
    "inception_v3": inception_v3,
    "nasnet": nasnet,
    "randwire": randwire,
    "squeezenet": squeezenet,
}


class UnknownModelError(UserError):
    """No model has this name; the message lists the names there are."""


def names() -> list[str]:
    """The built-in model names, sorted (file loaders such as ``onnx`` are not listed)."""
    return sorted(_MODELS)


def get(name: str, **kwargs: object) -> Graph:
    """Build the model ``name``, a linted `Graph` (`load` without the weights; the arguments and errors are its)."""
    return load(name, **kwargs)[0]


def load(name: str, **kwargs: object) -> tuple[Graph, Weights | None]:
    """Build or read the model ``name``: its linted `Graph` and the weights it comes with.

    A network read from a file (``onnx``) comes with the file's weights, which every engine must run; a built-in
    model with None: it runs on `ios_core.weights.make_weights` of its graph, what every engine takes when given
    no weights.

    Parameters
    ----------
    name
        One of `names()`.
    **kwargs
        Passed to the model's function, e.g. ``seed`` for ``randwire``.

    Raises
    ------
    UnknownModelError
        If ``name`` is not registered.
    ModelArgumentError
        For a keyword the model's function does not take, or a value not of its annotated type.
    """
    if name in _LOADERS:
        _check_arguments(name, _LOADERS[name], kwargs)
        return _LOADERS[name](**kwargs)
    if name not in _MODELS:
        known = ", ".join(names() + sorted(_LOADERS))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}")
    _check_arguments(name, _MODELS[name], kwargs)
    return _MODELS[name](**kwargs), None


def _check_arguments(name: str, build: Callable[..., object], kwargs: dict[str, object]) -> None:
    """Refuse a keyword ``build`` does not take, or a value not of its annotation (a config passes strings freely)."""
    taken = inspect.signature(build).parameters
    hints = get_type_hints(build)
    for key, value in kwargs.items():
        if key not in taken:
            takes = ", ".join(taken) or "none"
            raise ModelArgumentError(f"model {name!r} has no argument {key!r}; it takes: {takes}")
        if not _is_instance(value, hints[key]):
            raise ModelArgumentError(f"model {name!r} argument {key!r} must be {_type_name(hints[key])}, "
                                     f"got {value!r} ({type(value).__name__})")


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation allows: each member of a union, else the annotation itself."""
    return get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)


def _is_instance(value: object, annotation: Any) -> bool:
    # bool is an int to isinstance, but seed=true is a mistake, not the seed 1
    return any(isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
               for kind in _alternatives(annotation))


def _type_name(annotation: Any) -> str:
    return " or ".join("None" if kind is type(None) else kind.__name__ for kind in _alternatives(annotation))


__all__ = ["ModelArgumentError", "UnknownModelError", "get", "load", "names"]
