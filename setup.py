"""The optional C extension of rabbitipc.wire (everything else is in pyproject.toml).

`pip install .` compiles rabbitipc/wire/_speedups.c where a C compiler and Python's headers are
present; without them setuptools warns and installs the pure-Python fallback alone (optional=True).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rabbitipc.wire._speedups",
            sources=["rabbitipc/wire/_speedups.c"],
            extra_compile_args=["-std=c99", "-O2"],
            optional=True,
        )
    ]
)
