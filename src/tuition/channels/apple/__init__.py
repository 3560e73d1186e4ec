"""Apple App Store in-app purchase: signed transactions and Server Notifications V2,
verified with Apple's ``app-store-server-library`` (docs/channels.md)."""
