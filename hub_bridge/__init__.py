"""hub_bridge"""
