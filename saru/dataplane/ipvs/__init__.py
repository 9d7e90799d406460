"""The IPVS data plane (``plane``), its netlink transport (``netlink``), sync daemons (``sync``) and codec."""

from saru.dataplane.ipvs.plane import CAPABILITIES, PROC_IP_VS, IpvsDataplane, module_installed

__all__ = ["CAPABILITIES", "PROC_IP_VS", "IpvsDataplane", "module_installed"]
