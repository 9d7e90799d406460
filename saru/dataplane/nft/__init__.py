"""The nftables data plane (``plane``), its renderer (``render``), drift checks (``check``) and libnftables binding."""

from saru.dataplane.nft.plane import CAPABILITIES, NftDataplane

__all__ = ["CAPABILITIES", "NftDataplane"]
