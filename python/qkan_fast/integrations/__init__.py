"""Bridges to other QKAN libraries. Each submodule imports its library lazily, on first use.

- `qkan_fast.integrations.qkan`: a `"qkan_fast"` solver for the `qkan` package
  (`register()`), and `from_qkan` / `to_qkan` model converters.
"""

__all__ = ["qkan"]


def __getattr__(name):  # lazy: `import qkan_fast.integrations` imports no third-party library
    if name == "qkan":
        import importlib

        return importlib.import_module(".qkan", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
