# The one place the version lives: pyproject.toml reads it (scikit-build-core's regex provider),
# CMake receives it as SKBUILD_PROJECT_VERSION for build_info(), and __init__ re-exports it.
__version__ = "0.1.0"
