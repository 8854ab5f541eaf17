"""Install the plugin zip into a QGIS profile and make a worker venv the plugin's default.

Usage: python3 scripts/install_plugin.py PLUGIN_ZIP PROFILE_DIR WORKER_PYTHON
The plugin looks for its worker at ~/.local/share/lcz_qgis/venv; this links that path to the venv
of WORKER_PYTHON (unless a venv is already there).
"""

import shutil
import sys
import zipfile
from pathlib import Path


def main(zip_path: str, profile_dir: str, worker_python: str) -> None:
    plugins = Path(profile_dir) / "python" / "plugins"
    target = plugins / "lcz_qgis"
    plugins.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins)
    venv = Path(worker_python).absolute().parent.parent  # not resolve(): bin/python links out
    user_venv = Path.home() / ".local" / "share" / "lcz_qgis" / "venv"
    user_venv.parent.mkdir(parents=True, exist_ok=True)
    if not user_venv.exists() and not user_venv.is_symlink():
        user_venv.symlink_to(venv, target_is_directory=True)
    print(f"installed {target}; worker venv {user_venv} -> {user_venv.resolve()}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
