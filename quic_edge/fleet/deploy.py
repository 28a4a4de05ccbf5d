"""The same ServerApp and ClientApp as a real deployment: a Flower SuperLink, one SuperNode per device, `flwr run`.

    folder = write_flower_app("fleet_app/", ServerSettings(bundle="/abs/bundle", clients=2, rounds=2, out="/abs/out"))
    # flower-superlink --insecure --disable-runtime-dependency-installation --port 9200
    # flower-supernode --insecure --superlink 127.0.0.1:9200 --port 9201 --node-config "partition-id=0"   (one per device)
    # FLWR_HOME=... flwr run fleet_app/ <connection>        (a connection to 127.0.0.1:9200 in $FLWR_HOME/config.toml)

The app folder holds only a pyproject.toml: its components name quic_edge.fleet.server:app and
quic_edge.fleet.client:app, which every machine imports from its installed quic-edge (no code is shipped).
On a phone the SuperNode's ClientApp is the device loop on the phone's bundle and data.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from quic_edge.fleet.server import ServerSettings

APP_NAME = "quic-edge-fleet"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_flower_app(folder: str | os.PathLike, settings: ServerSettings) -> Path:
    """A Flower app folder (pyproject.toml) whose run config defaults are `settings`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = "\n".join(f"{k.replace('_', '-')} = {_toml_value(v)}" for k, v in asdict(settings).items())
    (folder / "pyproject.toml").write_text(
        f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{APP_NAME}"
version = "1.0.0"
description = "Federated QuIC adapters: the quic-edge device loop as a Flower ClientApp"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "quic-edge"

[tool.flwr.app.components]
serverapp = "quic_edge.fleet.server:app"
clientapp = "quic_edge.fleet.client:app"

[tool.flwr.app.config]
{config}
"""
    )
    return folder


def write_connection(flwr_home: str | os.PathLike, name: str, address: str) -> Path:
    """$FLWR_HOME/config.toml with one insecure SuperLink connection (`flwr run APP name`)."""
    path = Path(flwr_home) / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\naddress = "{address}"\ninsecure = true\n')
    return path
