"""The model registry: the four networks of the IOS paper, the tiny ``demo`` and ``onnx`` files, by name.

Importing this package only defines functions; a graph is built when `get` is called.
"""

from __future__ import annotations

from collections.abc import Callable

from ios_core.ir import Graph
from ios_core.models.demo import demo
from ios_core.models.inception_v3 import inception_v3
from ios_core.models.nasnet import nasnet
from ios_core.models.randwire import randwire
from ios_core.models.squeezenet import squeezenet


class ModelArgumentError(ValueError):
    """A model was asked for with arguments it cannot use."""


def onnx(path: str | None = None) -> Graph:
    """A network read from an ``.onnx`` file (`ios_core.onnx_io`), its graph without the head."""
    from ios_core.onnx_io import OnnxImportError, load_onnx  # onnx is heavy to import: only when asked for

    if not path:
        raise ModelArgumentError("model=onnx needs the file: model.path=<network.onnx>")
    try:
        return load_onnx(path).graph
    except (OSError, OnnxImportError) as error:
        raise ModelArgumentError(f"model=onnx cannot use {path!r}: {error}") from error


# Networks read from a file rather than built here: not in `names()`, since they need a path.
_LOADERS: dict[str, Callable[..., Graph]] = {"onnx": onnx}

_MODELS: dict[str, Callable[..., Graph]] = {
    "demo": demo,
    "inception_v3": inception_v3,
    "nasnet": nasnet,
    "randwire": randwire,
    "squeezenet": squeezenet,
}


class UnknownModelError(KeyError):
    """No model has this name; the message lists the names there are."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def names() -> list[str]:
    """The built-in model names, sorted (file loaders such as ``onnx`` are not listed)."""
    return sorted(_MODELS)


def get(name: str, **kwargs: object) -> Graph:
    """Build the model ``name``, a linted `Graph`.

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
    """
    build = _MODELS.get(name) or _LOADERS.get(name)
    if build is None:
        known = ", ".join(names() + sorted(_LOADERS))
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}")
    return build(**kwargs)


__all__ = ["ModelArgumentError", "UnknownModelError", "get", "names"]
