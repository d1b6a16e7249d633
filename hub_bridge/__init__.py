"""hub_bridge: priority routing, shedding, dedup and fusion between edge agents and cloud workers."""

from hub_bridge.bridge import HubBridge
from hub_bridge.config import BridgeConfig, ClassPolicies, ClassPolicy, FusionSettings

__all__ = ["BridgeConfig", "ClassPolicies", "ClassPolicy", "FusionSettings", "HubBridge"]
