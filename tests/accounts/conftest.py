"""Two accounts on two platforms, each on its local sandbox, configured through a config
file, the environment and a secrets file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import SandboxSettings
from worker.providers.passkit.sandbox.server import running_sandbox as running_passkit
from worker.providers.passkit.settings import PassKitSandboxSettings

PC_KEY = "pc-key-7a1d2c9e4f00b1"  # the Passcreator sandbox's key
PK_KEY = "pk-key-55e0aa31c2d9"  # the PassKit sandbox's REST key and secret
PK_SECRET = "pk-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ALL_SECRETS = {
    "PASSSYNC_PROVIDERS__BRAND_A__API_KEY": PC_KEY,
    "PASSSYNC_PROVIDERS__BRAND_B__API_KEY": PK_KEY,
    "PASSSYNC_PROVIDERS__BRAND_B__SECRET": PK_SECRET,
}


@pytest.fixture(scope="session")
def pc_sandbox() -> Iterator[SandboxHandle]:
    settings = SandboxSettings(host="127.0.0.1", port=0, api_key=SecretStr(PC_KEY))
    with running_sandbox(settings) as handle:
        yield handle


@pytest.fixture(scope="session")
def pk_sandbox() -> Iterator[str]:
    settings = PassKitSandboxSettings(
        host="127.0.0.1", port=0, api_key=SecretStr(PK_KEY), api_secret=SecretStr(PK_SECRET)
    )
    with running_passkit(settings) as handle:
        yield handle.base_url


@dataclass
class Accounts:
    """`brand_a` (Passcreator) and `brand_b` (PassKit, region pub2), on their sandboxes."""

    config: Path
    secrets: Path
    pc_url: str
    pk_url: str

    def write_secrets(self, lines: dict[str, str], mode: int = 0o600) -> Path:
        self.secrets.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        os.chmod(self.secrets, mode)
        return self.secrets


@pytest.fixture
def accounts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pc_sandbox: SandboxHandle,
    pk_sandbox: str,
) -> Accounts:
    config = tmp_path / "config.yaml"
    config.write_text(
        "providers:\n"
        f"  brand_a: {{kind: passcreator, base_url: '{pc_sandbox.base_url}'}}\n"
        f"  brand_b: {{kind: passkit, region: pub2, base_url: '{pk_sandbox}'}}\n"
    )
    monkeypatch.setenv("PASSSYNC_CONFIG", str(config))
    monkeypatch.setenv("PASSSYNC_DATA_DIR", str(tmp_path / "data"))
    secrets = tmp_path / "secrets.env"
    monkeypatch.setenv("PASSSYNC_CREDENTIALS__SECRETS_FILE", str(secrets))
    found = Accounts(config, secrets, pc_sandbox.base_url, pk_sandbox)
    found.write_secrets(ALL_SECRETS)
    return found
