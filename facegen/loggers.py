"""Experiment loggers with facegen's defaults."""

from __future__ import annotations

import netrc
import os
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_info


def wandb_credentials_available() -> bool:
    """True when W&B can authenticate without a prompt: ``WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = os.environ.get("NETRC", os.path.join(os.path.expanduser("~"), ".netrc"))
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, PermissionError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's W&B logger that goes offline by itself when the user is not logged in.

    Args:
        project: W&B project name.
        offline: ``None`` (default) decides from the credentials (and ``WANDB_MODE``); ``True``/``False`` force it.
        **kwargs: everything :class:`lightning.pytorch.loggers.WandbLogger` accepts.
    """

    def __init__(self, project: str = "facegen", offline: bool | None = None, **kwargs) -> None:
        if offline is None:
            mode = os.environ.get("WANDB_MODE", "")
            offline = mode in ("offline", "dryrun") or (
                mode != "online" and not wandb_credentials_available()
            )
            if offline:
                rank_zero_info(
                    "W&B: not logged in, logging offline to ./wandb/offline-run-* "
                    "(run `wandb login`, then `wandb sync wandb/offline-run-*` to upload)."
                )
        super().__init__(project=project, offline=offline, **kwargs)
