"""Build of the compiled event core (``twin/_core.py`` and ``twin/_core_heap.pyx``, through
Cython); everything else is in pyproject.toml.

The extensions are optional: where Cython or a C compiler is missing, or the build
fails, the install still succeeds and the twin runs its reference Python core with a
warning (:mod:`twin._core_select`).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Warn and go on where an extension does not build (setuptools' own ``optional``
    flag lets some compiler failures through, depending on its version)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # any failure: the reference core runs
            self.warn(
                f"the compiled event core was not built ({e}): the twin runs its "
                "reference Python core"
            )

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            self.warn(f"building {ext.name} failed ({e}): the twin runs its reference core")


try:
    from Cython.Build import cythonize
except ImportError:  # no Cython: no compiled core, the reference runs
    ext_modules = []
else:
    ext_modules = cythonize(
        [
            Extension("twin._core_heap", ["twin/_core_heap.pyx"], optional=True),
            Extension("twin.queues", ["twin/queues.py"], optional=True),
            Extension("twin.worker_record", ["twin/worker_record.py"], optional=True),
            Extension("twin._core", ["twin/_core.py"], optional=True),
        ],
        compiler_directives={
            "language_level": 3,
            "annotation_typing": False,  # the types are in twin/_core.pxd
            "boundscheck": False,
            "wraparound": False,
        },
        quiet=True,
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
