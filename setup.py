"""Ship the top-level hooks/, .logist-template/ and docs/ inside the wheel as logist/_data/
(`logist help TOPIC` shows the docs of an installed logist).

The project keeps them at the top of the repository (where users and reviewers look for them);
this build step copies them into the package so a normal, non-editable install finds them.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
DATA = {"hooks": "hooks", ".logist-template": "template", "docs": "docs"}


class BuildWithData(build_py):
    def run(self):
        super().run()
        for src, dest in DATA.items():
            target = Path(self.build_lib) / "logist" / "_data" / dest
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(ROOT / src, target)


setup(cmdclass={"build_py": BuildWithData})
