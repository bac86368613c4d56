"""vip-elector: Consul session + KV lock leader election feeding vip-manager."""

__version__ = "0.2.0"
