"""Builds the Cython engine in kernels/ into mshare_hw._engine and ships configs/ inside the package."""

import shutil
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
# numpy's C distributions and the math library they use (kernels/event_draws.pxi draws with the functions
# numpy's Generator uses): numpy/random/lib and numpy/_core/lib (numpy/core/lib before numpy 2)
NUMPY_INCLUDE = Path(np.get_include())
NUMPY_LIBS = [str(NUMPY_INCLUDE.parents[1] / "random" / "lib"), str(NUMPY_INCLUDE.parent / "lib")]


class BuildPyWithConfigs(build_py):
    """Copy the top-level configs/ into the built package so an installed mshare-hw finds them."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "mshare_hw" / "configs"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(HERE / "configs", target)


extensions = [
    Extension(
        "mshare_hw._engine",
        ["kernels/_engine.pyx"],
        include_dirs=[np.get_include(), "kernels"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        library_dirs=NUMPY_LIBS,
        libraries=["npyrandom", "npymath"],
        extra_compile_args=["-O3", "-funroll-loops"],  # unrolled block scans: faster walk-heavy replay
    ),
    # C microbenchmarks for `mshare-hw calibrate` (Linux x86-64); built with the package, never at run time
    Extension(
        "mshare_hw._probes",
        sorted(str(p.relative_to(HERE)) for p in (HERE / "kernels" / "probes").glob("*.c")),
        include_dirs=["kernels/probes"],
        extra_compile_args=["-O2"],
        libraries=["pthread"],
    ),
]

setup(
    ext_modules=cythonize(extensions, language_level=3, compiler_directives={"embedsignature": True}),
    cmdclass={"build_py": BuildPyWithConfigs},
)
