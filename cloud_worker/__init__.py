"""cloud_worker"""
