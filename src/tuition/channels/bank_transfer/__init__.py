"""Offline bank transfer (对公转账): the buyer transfers to the platform's account with a
reference; finance records what arrived (docs/channels.md)."""
